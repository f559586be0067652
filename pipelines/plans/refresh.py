"""Incremental plan matching: re-match only the planned days that changed.

Planned sessions and steps are rebuilt whole (they are small: no samples). A planned day is
re-matched when one of its planned sessions changed (row hash, steps included) or when an
activity changed on it (the activities stage records the local dates of the sessions it
rewrote). Matching with ``tolerance_days`` > 0 widens both by that many days. Results are
partitioned by ``planned_date``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from pipelines.lake.io import write_parquet_atomic
from pipelines.lake.layout import LakeLayout
from pipelines.lake.partitions import (
    DAY,
    Changes,
    expand_days,
    index_path,
    partition_days,
    read_changes,
    record_changes,
    replace_partitions,
    scan_silver,
)
from pipelines.plans.ingest import build_planned
from pipelines.plans.matching import MatchConfig, evaluate_plans

STAGE = "plans"
SILVER = ("plan_matches", "plan_interval_matches")


@dataclass
class PlanRefresh:
    full: bool = False
    planned_sessions: int = 0
    days: int = 0
    matches: pl.DataFrame | None = None
    problems: list[str] = field(default_factory=list)


def planned_hashes(planned: pl.DataFrame, steps: pl.DataFrame) -> pl.DataFrame:
    """planned_session_id, planned_date and one hash of the session row and its steps."""
    step_hash = steps.group_by("planned_session_id").agg(
        pl.struct(pl.all()).hash().sum().alias("steps_hash")  # a sum: order-independent
    )
    return (
        planned.select(
            "planned_session_id", "planned_date", pl.struct(pl.all()).hash().alias("row_hash")
        )
        .join(step_hash, on="planned_session_id", how="left")
        .select(
            "planned_session_id",
            "planned_date",
            (pl.col("row_hash") ^ pl.col("steps_hash").fill_null(0)).alias("hash"),
        )
    )


def _changed_days(old: pl.DataFrame, new: pl.DataFrame) -> set[date]:
    cols = ["planned_session_id", "planned_date", "hash"]
    gone = old.join(new, on=cols, how="anti")
    added = new.join(old, on=cols, how="anti")
    return set(pl.concat([gone, added]).get_column("planned_date").to_list())


def _match(
    layout: LakeLayout,
    planned: pl.DataFrame,
    steps: pl.DataFrame,
    session_days: set[date] | None,
    settings: MatchConfig,
    athletes_per_batch: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """evaluate_plans over athlete batches, reading activities of ``session_days`` (all
    when None) so memory stays bounded (benchmarks/plan_matching_speed.py)."""
    sessions_all = scan_silver(layout, "sessions", session_days)
    samples_all = scan_silver(layout, "samples", session_days)
    laps_all = scan_silver(layout, "intervals", session_days).filter(pl.col("kind") == "lap")
    users = planned.get_column("user_id").unique().sort().to_list()
    results = []
    for start in range(0, len(users), athletes_per_batch):
        batch = planned.filter(pl.col("user_id").is_in(users[start : start + athletes_per_batch]))
        sessions = sessions_all.filter(
            pl.col("user_id").is_in(batch["user_id"].unique().implode())
        ).collect()
        ids = sessions.get_column("session_id").implode()
        results.append(
            evaluate_plans(
                batch,
                steps.join(batch.select("planned_session_id"), on="planned_session_id"),
                sessions,
                samples_all.filter(pl.col("session_id").is_in(ids)).collect(),
                laps_all.filter(pl.col("session_id").is_in(ids)).collect(),
                settings,
            )
        )
    if not results:
        results.append(
            evaluate_plans(
                planned,
                steps,
                sessions_all.head(0).collect(),
                samples_all.head(0).collect(),
                laps_all.head(0).collect(),
                settings,
            )
        )
    return pl.concat([m for m, _ in results]), pl.concat([r for _, r in results])


def refresh_plan_matches(
    layout: LakeLayout,
    settings: MatchConfig,
    athletes_per_batch: int = 100,
    also_days: Iterable[date] = (),
) -> PlanRefresh:
    """Re-match the planned days that changed (and ``also_days``: a backfill)."""
    planned, steps, problems = build_planned(layout)
    hashes = planned_hashes(planned, steps)
    state = index_path(layout, STAGE)
    activity = read_changes(layout, "activities")
    full = activity.full or not state.exists()
    report = PlanRefresh(full=full, planned_sessions=planned.height, problems=problems)
    tol = settings.tolerance_days
    planned_changed = full
    if full:
        days = set(hashes.get_column("planned_date").to_list())
        days |= set().union(*(partition_days(layout, t) for t in SILVER))
        session_days = None
    else:
        touched = _changed_days(pl.read_parquet(state), hashes)
        planned_changed = bool(touched)
        touched |= {date.fromisoformat(d) for d in activity.get("local_date")}
        touched |= set(also_days)
        days = expand_days(touched, tol)
        # A local date lies within a day of the UTC date its session is partitioned by.
        session_days = expand_days(days, tol + 1)
    changes = Changes(full=full)
    # The warehouse replaces planned_sessions/planned_steps (and their gold) only when flagged.
    changes.add("planned_changed", ["yes"] if planned_changed else [])
    if days or full:
        chosen = planned.filter(pl.col("planned_date").is_in(list(days)))
        chosen_steps = steps.join(chosen.select("planned_session_id"), on="planned_session_id")
        old = (
            scan_silver(layout, "plan_matches", days, {"planned_session_id": pl.String()})
            .select("planned_session_id")
            .collect()
        )
        matches, step_rows = _match(
            layout, chosen, chosen_steps, session_days, settings, athletes_per_batch
        )
        day_of = matches.select("planned_session_id", pl.col("planned_date").alias(DAY))
        replace_partitions(
            layout, "plan_matches", matches.with_columns(pl.col("planned_date").alias(DAY)), days
        )
        replace_partitions(
            layout,
            "plan_interval_matches",
            step_rows.join(day_of, on="planned_session_id", how="inner"),
            days,
        )
        changes.add("day", days)
        changes.add("planned", old.get_column("planned_session_id"))
        changes.add("planned", matches.get_column("planned_session_id"))
        report.matches = matches
    report.days = len(days)
    if planned_changed:
        for name, frame in (("planned_sessions", planned), ("planned_steps", steps)):
            write_parquet_atomic(frame, layout.silver_path(name))
    record_changes(layout, STAGE, changes)
    write_parquet_atomic(hashes, state)
    return report
