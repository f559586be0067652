"""Idempotent sync of planned sessions to Garmin workouts and schedules.

The state table ``outbound/garmin_workouts`` says, per planned session, what Garmin holds:
the workout (``workout_id``, and ``content_hash`` of the JSON it was given) and the schedule
(``schedule_id`` on ``scheduled_date``). A run compares the planned sessions of its window
with it and sends only the difference:

* no workout yet → POST the workout, then POST its schedule;
* the workout's JSON changed → PUT it in place (404: deleted on Garmin's side → recreated);
* the date changed, or no schedule yet → PUT the schedule (404 → a new one), or POST one;
* a session no longer planned (in the window) → DELETE its schedule and workout;
* its user lacks WORKOUT_IMPORT → refused and reported, nothing sent.

The state is written after every session, and ``content_hash`` / ``scheduled_date`` change
only once Garmin has confirmed, so a failure (or a killed run) leaves a state from which the
next run finishes the job, without sending anything twice. A failed session is recorded with
its (redacted) error and never stops the others; a user whose daily quota is spent is left
for the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.lake.io import write_parquet_atomic
from pipelines.lake.layout import LakeLayout
from pipelines.training import endpoints
from pipelines.training.client import ApiError, GarminClient, QuotaExceeded
from pipelines.training.users import (
    WORKOUT_IMPORT,
    granted,
    latest_permissions,
    outbound_path,
    purge_users,
    read_outbound,
)
from pipelines.training.workouts import WorkoutError, content_hash, workout_json

TABLE = "garmin_workouts"
SYNCED, FAILED, REFUSED, DELETED = "synced", "failed", "refused", "deleted"

STATE_SCHEMA: dict[str, pl.DataType] = {
    "planned_session_id": pl.String(),
    "user_id": pl.String(),
    "workout_id": pl.String(),  # Garmin's workoutId (null: none on Garmin)
    "schedule_id": pl.String(),  # Garmin's scheduleId (null: not scheduled)
    "planned_date": pl.Date(),  # the planned session's date
    "scheduled_date": pl.Date(),  # the date Garmin has it scheduled on
    "content_hash": pl.String(),  # sha256 of the workout JSON Garmin holds
    "status": pl.String(),  # synced | failed | refused | deleted
    "synced_at": pl.Datetime("us", "UTC"),  # last time Garmin confirmed everything
    "last_error": pl.String(),  # redacted
    "failures": pl.Int64(),  # failed runs in a row
    "updated_at": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class SyncOptions:
    start: date
    end: date
    users: frozenset[str] | None = None  # None: every user
    dry_run: bool = False
    verify: bool = False  # GET every synced workout, recreating those deleted on Garmin


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    calls: int = 0
    dry_run: bool = False

    def lines(self) -> list[str]:
        verb = "would be " if self.dry_run else ""
        out = [
            f"{len(self.created)} {verb}created, {len(self.updated)} {verb}updated, "
            f"{len(self.deleted)} {verb}deleted, {len(self.refused)} refused, "
            f"{len(self.failed)} failed, {self.unchanged} unchanged ({self.calls} API calls)"
        ]
        out += [f"  created   {s}" for s in self.created]
        out += [f"  updated   {s}" for s in self.updated]
        out += [f"  recreated {s} (deleted on Garmin's side)" for s in self.recreated]
        out += [f"  deleted   {s}" for s in self.deleted]
        out += [f"  refused   {s}: {why}" for s, why in self.refused]
        out += [f"  failed    {s}: {why}" for s, why in self.failed]
        return out


def read_state(layout: LakeLayout) -> pl.DataFrame:
    return read_outbound(layout, TABLE, STATE_SCHEMA)


def _write_state(layout: LakeLayout, rows: dict[str, dict[str, Any]]) -> None:
    frame = pl.DataFrame(list(rows.values()), schema=STATE_SCHEMA, orient="row")
    write_parquet_atomic(
        frame.sort("user_id", "planned_date", "planned_session_id"), state_path(layout)
    )


def state_path(layout: LakeLayout) -> Path:
    return outbound_path(layout, TABLE)


def planned(layout: LakeLayout) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Silver planned sessions and steps (empty before the first plan)."""
    sessions, steps = layout.silver_path("planned_sessions"), layout.silver_path("planned_steps")
    if not sessions.exists() or not steps.exists():
        return pl.DataFrame(), pl.DataFrame()
    return pl.read_parquet(sessions), pl.read_parquet(steps)


def _empty_row(session: dict[str, Any]) -> dict[str, Any]:
    row = dict.fromkeys(STATE_SCHEMA)
    row.update(
        planned_session_id=session["planned_session_id"],
        user_id=session["user_id"],
        planned_date=session["planned_date"],
        failures=0,
    )
    return row


class _Sender:
    """The calls of one session or deletion; each raises ApiError on an unusable answer."""

    def __init__(self, client: GarminClient) -> None:
        self.client = client

    def _ok(self, response, what: str, accept: Iterable[int] = (200, 201, 204)) -> None:
        if response.status_code not in accept:
            raise self.client.error(response, what)

    def create_workout(self, user: str, body: dict[str, Any]) -> str:
        response = self.client.request("POST", endpoints.WORKOUT_CREATE, user, json_body=body)
        self._ok(response, "create workout", (200, 201))
        try:
            workout_id = response.json().get("workoutId")
        except (ValueError, AttributeError):
            workout_id = None
        if workout_id is None:
            raise ApiError("create workout: the answer has no workoutId", response.status_code)
        return str(workout_id)

    def put_workout(self, user: str, workout_id: str, body: dict[str, Any]) -> bool:
        """False when Garmin no longer has the workout."""
        body = {**body, "workoutId": _as_number(workout_id)}
        response = self.client.request("PUT", endpoints.workout(workout_id), user, json_body=body)
        if response.status_code == 404:
            return False
        self._ok(response, "update workout")
        return True

    def workout_exists(self, user: str, workout_id: str) -> bool:
        response = self.client.request("GET", endpoints.workout(workout_id), user)
        if response.status_code == 404:
            return False
        self._ok(response, "read workout", (200,))
        return True

    def create_schedule(self, user: str, workout_id: str, when: date) -> str:
        body = {"workoutId": _as_number(workout_id), "date": when.isoformat()}
        response = self.client.request("POST", endpoints.SCHEDULE_CREATE, user, json_body=body)
        self._ok(response, "schedule workout", (200, 201))
        try:
            answer = response.json()
        except ValueError:
            answer = None
        schedule_id = answer.get("scheduleId") if isinstance(answer, dict) else answer
        if schedule_id is None or isinstance(schedule_id, bool | list | dict):
            raise ApiError("schedule workout: the answer has no scheduleId", response.status_code)
        return str(schedule_id)

    def put_schedule(self, user: str, schedule_id: str, workout_id: str, when: date) -> bool:
        body = {
            "scheduleId": _as_number(schedule_id),
            "workoutId": _as_number(workout_id),
            "date": when.isoformat(),
        }
        response = self.client.request("PUT", endpoints.schedule(schedule_id), user, json_body=body)
        if response.status_code == 404:
            return False
        self._ok(response, "reschedule workout")
        return True

    def delete(self, user: str, path: str, what: str) -> None:
        response = self.client.request("DELETE", path, user)
        self._ok(response, what, (200, 202, 204, 404))  # 404: already gone, as wanted


def _as_number(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _push_session(
    sender: _Sender,
    row: dict[str, Any],
    body: dict[str, Any],
    digest: str,
    when: date,
    verify: bool,
    report: SyncReport,
) -> None:
    user, sid = row["user_id"], row["planned_session_id"]
    recreate = False
    if row["workout_id"] is not None and row["content_hash"] != digest:
        if sender.put_workout(user, row["workout_id"], body):
            row["content_hash"] = digest
            report.updated.append(sid)
        else:
            recreate = True
    elif row["workout_id"] is not None and verify:
        recreate = not sender.workout_exists(user, row["workout_id"])
    if recreate:
        report.recreated.append(sid)
        # Garmin drops a deleted workout's schedules; one left over is removed (404 is fine).
        if row["schedule_id"] is not None:
            sender.delete(user, endpoints.schedule(row["schedule_id"]), "delete schedule")
        row.update(workout_id=None, schedule_id=None, scheduled_date=None, content_hash=None)
    if row["workout_id"] is None:
        row["workout_id"] = sender.create_workout(user, body)
        row["content_hash"] = digest
        row.update(schedule_id=None, scheduled_date=None)
        if not recreate:
            report.created.append(sid)
    if row["schedule_id"] is not None and row["scheduled_date"] != when:
        if sender.put_schedule(user, row["schedule_id"], row["workout_id"], when):
            row["scheduled_date"] = when
            if sid not in report.updated:
                report.updated.append(sid)
        else:
            row["schedule_id"] = None
    if row["schedule_id"] is None:
        row["schedule_id"] = sender.create_schedule(user, row["workout_id"], when)
        row["scheduled_date"] = when


def _needs_push(row: dict[str, Any] | None, digest: str, when: date) -> str | None:
    """What a real run would do for the session: create, update or nothing (None)."""
    if row is None or row["workout_id"] is None:
        return "create"
    if row["content_hash"] != digest or row["scheduled_date"] != when or not row["schedule_id"]:
        return "update"
    return None


def run_sync(
    layout: LakeLayout,
    client: GarminClient | None,
    options: SyncOptions,
    now: datetime | None = None,
) -> SyncReport:
    """Bring Garmin in step with the planned sessions of the window (``client`` may be None
    for a dry run)."""
    report = SyncReport(dry_run=options.dry_run)
    if not options.dry_run:
        if client is None:
            raise ValueError("a client is needed unless it is a dry run")
        purge_users(layout)  # erased users' rows go before anything is sent
    now = now or datetime.now(UTC)
    rows = {r["planned_session_id"]: r for r in read_state(layout).iter_rows(named=True)}
    sessions, steps = planned(layout)
    all_ids = set(sessions.get_column("planned_session_id")) if sessions.height else set()
    if sessions.height:
        window = sessions.filter(pl.col("planned_date").is_between(options.start, options.end))
        if options.users is not None:
            window = window.filter(pl.col("user_id").is_in(sorted(options.users)))
        window = window.sort("user_id", "planned_date", "planned_session_id")
        wanted = set(window.get_column("planned_session_id"))
        steps_of = {
            key[0]: frame.to_dicts()
            for key, frame in steps.filter(pl.col("planned_session_id").is_in(sorted(wanted)))
            .sort("step_index")
            .group_by("planned_session_id")
        }
    else:
        window, steps_of = pl.DataFrame(), {}
    permissions = latest_permissions(layout)
    sender = _Sender(client) if client is not None else None
    out_of_quota: dict[str, str] = {}

    def save(row: dict[str, Any]) -> None:
        row["updated_at"] = now
        rows[row["planned_session_id"]] = row
        if not options.dry_run:
            _write_state(layout, rows)

    def fail(row: dict[str, Any], reason: str) -> None:
        row.update(status=FAILED, last_error=reason, failures=(row["failures"] or 0) + 1)
        report.failed.append((row["planned_session_id"], reason))

    for session in window.iter_rows(named=True) if window.height else ():
        sid, user, when = session["planned_session_id"], session["user_id"], session["planned_date"]
        row = dict(rows.get(sid) or _empty_row(session))
        row["planned_date"] = when
        if row["status"] == DELETED:
            row.update(workout_id=None, schedule_id=None, scheduled_date=None, content_hash=None)
        if not granted(permissions, user, WORKOUT_IMPORT):
            reason = "the user has not granted WORKOUT_IMPORT"
            report.refused.append((sid, reason))
            if (row["status"], row["last_error"]) != (REFUSED, reason):
                row.update(status=REFUSED, last_error=reason)
                save(row)
            continue
        try:
            body = workout_json(session, steps_of.get(sid, []))
        except WorkoutError as exc:
            fail(row, f"not expressible as a Garmin workout: {exc}")
            save(row)
            continue
        digest = content_hash(body)
        action = _needs_push(row, digest, when)
        if action is None and not options.verify and row["status"] == SYNCED:
            report.unchanged += 1
            continue
        if options.dry_run or sender is None:
            {"create": report.created, "update": report.updated}.get(action or "", []).append(sid)
            if action is None:
                report.unchanged += 1
            continue
        if user in out_of_quota:
            fail(row, out_of_quota[user])
            save(row)
            continue
        try:
            _push_session(sender, row, body, digest, when, options.verify, report)
        except QuotaExceeded as exc:
            out_of_quota[user] = str(exc)
            fail(row, str(exc))
        except ApiError as exc:
            if exc.status == 403:
                row.update(status=REFUSED, last_error=f"Garmin refused: {exc}")
                report.refused.append((sid, f"Garmin refused: {exc}"))
            else:
                fail(row, str(exc))
        else:
            if action is None and sid not in report.recreated:
                report.unchanged += 1
            row.update(status=SYNCED, synced_at=now, last_error=None, failures=0)
        save(row)

    _delete_removed(rows, all_ids, options, permissions, sender, report, save, fail, out_of_quota)
    if client is not None:
        report.calls = client.calls
    return report


def _delete_removed(
    rows: dict[str, dict[str, Any]],
    all_ids: set[str],
    options: SyncOptions,
    permissions: dict[str, list[str]],
    sender: _Sender | None,
    report: SyncReport,
    save: Callable[[dict[str, Any]], None],
    fail: Callable[[dict[str, Any], str], None],
    out_of_quota: dict[str, str],
) -> None:
    """Workouts and schedules of sessions no longer planned (dated in the window)."""
    for sid, stored in sorted(rows.items()):
        user = stored["user_id"]
        if stored["status"] == DELETED or sid in all_ids:
            continue
        if options.users is not None and user not in options.users:
            continue
        if not options.start <= stored["planned_date"] <= options.end:
            continue
        row = dict(stored)
        if row["workout_id"] is None and row["schedule_id"] is None:
            row.update(status=DELETED, last_error=None)  # nothing on Garmin
        elif not granted(permissions, user, WORKOUT_IMPORT):
            report.refused.append((sid, "the user has not granted WORKOUT_IMPORT (not deleted)"))
            continue
        elif options.dry_run or sender is None:
            report.deleted.append(sid)
            continue
        elif user in out_of_quota:
            fail(row, out_of_quota[user])
        else:
            try:
                if row["schedule_id"] is not None:
                    sender.delete(user, endpoints.schedule(row["schedule_id"]), "delete schedule")
                    row.update(schedule_id=None, scheduled_date=None)
                if row["workout_id"] is not None:
                    sender.delete(user, endpoints.workout(row["workout_id"]), "delete workout")
                row.update(status=DELETED, last_error=None, failures=0)
                report.deleted.append(sid)
            except QuotaExceeded as exc:
                out_of_quota[user] = str(exc)
                fail(row, str(exc))
            except ApiError as exc:
                fail(row, str(exc))
        save(row)
