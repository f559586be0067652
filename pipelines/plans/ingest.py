"""Plan files in landing/plans/<user_id>/ → bronze, and planned sessions/steps from bronze.

Layout: native plans (``*.yaml``, ``*.yml``, ``*.json``) anywhere under the user folder;
Garmin Training API workouts under ``workouts/`` and their schedules under ``schedules/``.
A plan file edited in place is a new version of the same plan: the newest content per path
wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import polars as pl

from pipelines.lake.io import scan_parts
from pipelines.lake.layout import LakeLayout
from pipelines.lake.ledger import read_landed, read_ledger
from pipelines.lake.quarantine import QuarantineBatch
from pipelines.lake.stage import (
    LINEAGE_SCHEMA,
    failure_reason,
    mark_processed,
    pending_files,
    refuse_input,
    with_lineage,
    write_bronze,
)
from pipelines.plans.garmin_workouts import parse_schedule, parse_workout, workout_sessions
from pipelines.plans.model import (
    MAX_PLAN_FILE_BYTES,
    PLANNED_SESSION_SCHEMA,
    PLANNED_STEP_SCHEMA,
    PlanError,
    frames,
)
from pipelines.plans.native import parse_native_plan

STAGE = "plans"
WORKOUT_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "workout_id": pl.String(),
    "body_json": pl.String(),
}
SCHEDULE_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "workout_id": pl.String(),
    "planned_date": pl.Date(),
}
TABLES = {
    "plan_sessions": PLANNED_SESSION_SCHEMA,
    "plan_steps": PLANNED_STEP_SCHEMA,
    "plan_workouts": WORKOUT_SCHEMA,
    "plan_schedules": SCHEDULE_SCHEMA,
}


@dataclass
class PlanIngestReport:
    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    quarantined_files: int = 0


def _parse(raw: bytes, relative: PurePosixPath, user_id: str) -> dict[str, pl.DataFrame]:
    inside = relative.parts[2:-1]
    name = relative.name
    if "workouts" in inside:
        workout_id, body = parse_workout(raw, relative.stem)
        workout_sessions(workout_id, body, [], user_id)  # validates every step now
        row = {"user_id": user_id, "workout_id": workout_id, "body_json": json.dumps(body)}
        return {"plan_workouts": pl.DataFrame([row], schema=WORKOUT_SCHEMA)}
    if "schedules" in inside:
        rows = [
            {"user_id": user_id, "workout_id": w, "planned_date": d} for w, d in parse_schedule(raw)
        ]
        return {"plan_schedules": pl.DataFrame(rows, schema=SCHEDULE_SCHEMA)}
    if relative.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise PlanError("not a plan file: expected .yaml, .yml or .json")
    sessions, steps = frames(user_id, parse_native_plan(raw, name, user_id))
    return {"plan_sessions": sessions, "plan_steps": steps}


def ingest_plan_files(landing: Path, layout: LakeLayout) -> PlanIngestReport:
    report = PlanIngestReport()
    for file_row in pending_files(layout, "plan", STAGE).iter_rows(named=True):
        report.files += 1
        relative = PurePosixPath(file_row["path"])
        try:
            raw = read_landed(landing, file_row, MAX_PLAN_FILE_BYTES)
            parsed = _parse(raw, relative, file_row["user_id"])
        except PlanError as exc:
            reason = str(exc)
        except Exception as exc:  # one input's failure, whatever it is, is that input's alone
            reason = failure_reason(exc)
        else:
            reason = None
        if reason is not None:
            refuse_input(layout, STAGE, file_row, reason, TABLES)
            report.quarantined_files += 1
            continue
        for table in TABLES:
            frame = parsed.get(table, pl.DataFrame())
            if frame.height:
                frame = with_lineage(frame, file_row)
                report.rows[table] = report.rows.get(table, 0) + frame.height
            write_bronze(layout, table, file_row["sha256"], frame)
        QuarantineBatch(file_row["path"], file_row["sha256"], STAGE).write(layout)
        mark_processed(layout, STAGE, file_row, "ingested", sum(f.height for f in parsed.values()))
    return report


def _current(layout: LakeLayout, table: str) -> pl.LazyFrame:
    """Rows from the newest content of each plan file path."""
    newest = (
        read_ledger(layout)
        .filter(pl.col("kind") == "plan")
        .sort("registered_at")
        .group_by("path")
        .agg(pl.col("sha256").last().alias("source_sha256"))
        .lazy()
    )
    rows = scan_parts(layout.bronze_dir(table), {**TABLES[table], **LINEAGE_SCHEMA})
    return rows.join(newest.select("source_sha256"), on="source_sha256", how="semi")


def build_planned(layout: LakeLayout) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(planned_sessions, planned_steps, problems): native plans plus scheduled workouts."""
    sessions = [_current(layout, "plan_sessions").select(list(PLANNED_SESSION_SCHEMA)).collect()]
    steps = [_current(layout, "plan_steps").select(list(PLANNED_STEP_SCHEMA)).collect()]
    workouts = {
        (r["user_id"], r["workout_id"]): r["body_json"]
        for r in _current(layout, "plan_workouts").collect().iter_rows(named=True)
    }
    schedules = (
        _current(layout, "plan_schedules")
        .group_by("user_id", "workout_id")
        .agg(pl.col("planned_date").unique().sort())
        .collect()
    )
    problems = []
    for row in schedules.iter_rows(named=True):
        body = workouts.get((row["user_id"], row["workout_id"]))
        if body is None:
            problems.append(
                f"user {row['user_id']}: schedule names workout {row['workout_id']}, "
                "which was never delivered"
            )
            continue
        try:
            planned = workout_sessions(
                row["workout_id"], json.loads(body), row["planned_date"], row["user_id"]
            )
            s, st = frames(row["user_id"], planned)
        except PlanError as exc:  # e.g. scheduled on more dates than one file may hold
            problems.append(f"user {row['user_id']}: workout {row['workout_id']}: {exc}")
            continue
        sessions.append(s)
        steps.append(st)
    planned_sessions = pl.concat(sessions).unique("planned_session_id", keep="last")
    planned_steps = pl.concat(steps).unique(["planned_session_id", "step_index"], keep="last")
    return (
        planned_sessions.sort("user_id", "planned_date", "planned_session_id"),
        planned_steps.sort("planned_session_id", "step_index"),
        problems,
    )
