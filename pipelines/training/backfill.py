"""Backfill requests: historical data asked for in Garmin's windows, each request recorded.

Garmin answers a backfill request with 202 and later delivers the data through the normal
push/ping path. One request covers at most 90 days of a health summary type or 30 days of an
activity type. 409 means the window was already requested (done, as far as we are concerned);
403 means the user did not grant HISTORICAL_DATA_EXPORT (recorded, not retried: only the user
can change it). Every window's outcome is kept in ``outbound/garmin_backfill``, so a run that
stops (quota, network) resumes where it stopped and never asks twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import polars as pl

from pipelines.lake.io import write_parquet_atomic
from pipelines.lake.layout import LakeLayout
from pipelines.training import endpoints
from pipelines.training.client import ApiError, GarminClient, QuotaExceeded
from pipelines.training.users import outbound_path, read_outbound

TABLE = "garmin_backfill"
ACTIVITY_TYPES = frozenset(
    {"activities", "activityDetails", "activityFiles", "manuallyUpdatedActivities", "moveiq"}
)
HEALTH_TYPES = frozenset(
    {
        "dailies",
        "epochs",
        "sleeps",
        "bodyComps",
        "stressDetails",
        "userMetrics",
        "pulseOx",
        "respiration",
        "healthSnapshot",
        "hrv",
        "bloodPressures",
        "skinTemp",
    }
)
ACTIVITY_WINDOW_DAYS = 30
HEALTH_WINDOW_DAYS = 90
ACCEPTED, DUPLICATE, FORBIDDEN, FAILED = "accepted", "duplicate", "forbidden", "failed"
DONE = frozenset({ACCEPTED, DUPLICATE, FORBIDDEN})

SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "summary_type": pl.String(),
    "start_s": pl.Int64(),  # summaryStartTimeInSeconds (UTC epoch, inclusive)
    "end_s": pl.Int64(),  # summaryEndTimeInSeconds (exclusive)
    "status": pl.String(),  # accepted | duplicate | forbidden | failed
    "http_status": pl.Int64(),
    "requested_at": pl.Datetime("us", "UTC"),
    "last_error": pl.String(),
}


class BackfillError(ValueError):
    pass


def window_days(summary_type: str) -> int:
    if summary_type in ACTIVITY_TYPES:
        return ACTIVITY_WINDOW_DAYS
    if summary_type in HEALTH_TYPES:
        return HEALTH_WINDOW_DAYS
    known = ", ".join(sorted(ACTIVITY_TYPES | HEALTH_TYPES))
    raise BackfillError(f"unknown summary type {summary_type!r} (one of: {known})")


def windows(summary_type: str, start: date, end: date) -> list[tuple[int, int]]:
    """[start, end] (whole UTC days) as (start_s, end_s) windows of the type's size."""
    if end < start:
        raise BackfillError(f"--to {end} is before --from {start}")
    size = timedelta(days=window_days(summary_type))
    first = datetime.combine(start, time(), UTC)
    stop = datetime.combine(end + timedelta(days=1), time(), UTC)
    out = []
    while first < stop:
        last = min(first + size, stop)
        out.append((int(first.timestamp()), int(last.timestamp())))
        first = last
    return out


@dataclass
class BackfillReport:
    requested: int = 0
    duplicate: int = 0
    forbidden: int = 0
    failed: list[str] = field(default_factory=list)
    already_done: int = 0
    calls: int = 0

    def lines(self) -> list[str]:
        out = [
            f"{self.requested} windows requested, {self.duplicate} already requested (409), "
            f"{self.forbidden} forbidden (403: no HISTORICAL_DATA_EXPORT), "
            f"{self.already_done} done by earlier runs, {len(self.failed)} failed"
        ]
        return out + [f"  failed {reason}" for reason in self.failed]


def read_requests(layout: LakeLayout) -> pl.DataFrame:
    return read_outbound(layout, TABLE, SCHEMA)


def run_backfill(
    layout: LakeLayout,
    client: GarminClient,
    user_id: str,
    summary_type: str,
    start: date,
    end: date,
    now: datetime | None = None,
) -> BackfillReport:
    report = BackfillReport()
    now = now or datetime.now(UTC)
    planned = windows(summary_type, start, end)
    rows = {
        (r["user_id"], r["summary_type"], r["start_s"], r["end_s"]): r
        for r in read_requests(layout).iter_rows(named=True)
    }

    def save(row: dict) -> None:
        rows[(row["user_id"], row["summary_type"], row["start_s"], row["end_s"])] = row
        frame = pl.DataFrame(list(rows.values()), schema=SCHEMA, orient="row")
        write_parquet_atomic(
            frame.sort("user_id", "summary_type", "start_s"), outbound_path(layout, TABLE)
        )

    for start_s, end_s in planned:
        key = (user_id, summary_type, start_s, end_s)
        if key in rows and rows[key]["status"] in DONE:
            report.already_done += 1
            continue
        row = {
            "user_id": user_id,
            "summary_type": summary_type,
            "start_s": start_s,
            "end_s": end_s,
            "requested_at": now,
            "http_status": None,
            "last_error": None,
        }
        where = f"{summary_type} {datetime.fromtimestamp(start_s, UTC):%Y-%m-%d}"
        try:
            response = client.request(
                "GET",
                endpoints.backfill(summary_type),
                user_id,
                params={"summaryStartTimeInSeconds": start_s, "summaryEndTimeInSeconds": end_s},
            )
        except QuotaExceeded as exc:
            report.failed.append(f"{where}: {exc}")
            break  # every later window would hit the same quota: the next run resumes here
        except ApiError as exc:
            row.update(status=FAILED, http_status=exc.status, last_error=str(exc))
            report.failed.append(f"{where}: {exc}")
            save(row)
            continue
        status = response.status_code
        row["http_status"] = status
        if status in (200, 202):
            row["status"] = ACCEPTED
            report.requested += 1
        elif status == 409:
            row["status"] = DUPLICATE
            report.duplicate += 1
        elif status == 403:
            row["status"] = FORBIDDEN
            report.forbidden += 1
        else:
            error = client.error(response, "backfill request")
            row.update(status=FAILED, last_error=str(error))
            report.failed.append(f"{where}: {error}")
        save(row)
    report.calls = client.calls
    return report
