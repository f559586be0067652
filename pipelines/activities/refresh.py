"""Incremental silver activities: recompute only the UTC days that new bronze parts touch.

A session belongs to the day its start falls on (UTC), and so do its samples, bounds and
intervals. New parts (FIT files, Garmin bodies) touch the days they start sessions on; those
days ± 1 are recomputed (a FIT file and its API twin may start either side of midnight) from
the bronze parts of those days ± 1 more, so every source of every recomputed session is read.
A full rebuild (first run, or after an erasure removed parts) runs the same code month by month.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from pipelines.activities.build import (
    FIT_TABLES,
    GARMIN_ACTIVITY_TABLES,
    bronze,
    build_silver_activities,
)
from pipelines.activities.from_garmin import activity_key
from pipelines.activities.model import SESSION_SCHEMA
from pipelines.lake.layout import LakeLayout
from pipelines.lake.partitions import (
    DAY,
    Changes,
    RefreshPlan,
    partition_day,
    parts_for,
    plan_refresh,
    rebuild_chunks,
    record_changes,
    replace_partitions,
    scan_silver,
    write_index,
)

STAGE = "activities"
BRONZE = (*GARMIN_ACTIVITY_TABLES, *FIT_TABLES)
SILVER = ("sessions", "samples", "interval_bounds", "intervals")
FULL_CHUNK_DAYS = 31


def part_days(layout: LakeLayout, hashes: set[str]) -> pl.DataFrame:
    """(part, UTC day, activity key) for every session start in these bronze parts (FIT files
    without a session message: their first record). The key (user and activityId, else
    summaryId) ties the deliveries of one activity together wherever they are dated."""

    def garmin(table: str) -> pl.LazyFrame:
        return bronze(layout, table, hashes).select(
            "source_sha256",
            partition_day(pl.col("start_time_utc")).alias("day"),
            pl.concat_str("user_id", pl.lit("|"), activity_key()).alias("key"),
        )

    linked = bronze(layout, "fit_files", hashes).select(
        "source_sha256",
        pl.concat_str("user_id", pl.lit("|activity:"), pl.col("activity_id").cast(pl.String)).alias(
            "key"
        ),
    )
    fit_starts = pl.concat(
        [
            bronze(layout, "fit_sessions", hashes).select("source_sha256", "start_time_utc"),
            bronze(layout, "fit_records", hashes)
            .group_by("source_sha256")
            .agg(pl.col("time_utc").min().alias("start_time_utc")),
        ]
    ).select("source_sha256", partition_day(pl.col("start_time_utc")).alias("day"))
    fit = fit_starts.join(linked, on="source_sha256", how="left")
    frames = [garmin("garmin_activities"), garmin("garmin_activity_details"), fit]
    return pl.concat(frames, how="vertical_relaxed").unique().collect()


@dataclass
class ActivityRefresh:
    full: bool = False
    days: int = 0
    sessions: int = 0
    samples: int = 0
    parts_read: set[str] = field(default_factory=set)


def local_date(sessions: pl.LazyFrame) -> pl.LazyFrame:
    return sessions.select(
        pl.coalesce("start_time_local", pl.col("start_time_utc").dt.replace_time_zone(None))
        .dt.date()
        .alias("local_date")
    )


def _recompute(layout: LakeLayout, plan: RefreshPlan, days: set[date], changes: Changes):
    """Rewrite the partitions of ``days`` from the bronze parts they need (parts_for)."""
    parts = parts_for(plan, days)
    old = (
        scan_silver(layout, "sessions", days, SESSION_SCHEMA)
        .select("session_id", "start_time_utc", "start_time_local")
        .collect()
    )
    silver = build_silver_activities(lambda table: bronze(layout, table, parts))
    sessions = silver.sessions.with_columns(partition_day(pl.col("start_time_utc")).alias(DAY))
    sessions = sessions.filter(pl.col(DAY).is_in(list(days)))
    day_of = sessions.select("session_id", DAY)
    for table, frame in (
        ("sessions", sessions),
        ("samples", silver.samples),
        ("interval_bounds", silver.bounds),
        ("intervals", silver.intervals),
    ):
        if table != "sessions":
            frame = frame.join(day_of, on="session_id", how="inner")
        replace_partitions(layout, table, frame, days)
    changes.add("session", old.get_column("session_id"))
    changes.add("session", sessions.get_column("session_id"))
    changes.add("day", days)
    for frame in (old, sessions):
        changes.add("local_date", local_date(frame.lazy()).collect().get_column("local_date"))
    return sessions.height, silver.samples.join(day_of, on="session_id").height, parts


def refresh_silver_activities(
    layout: LakeLayout, force_full: bool = False, also_days: Iterable[date] = ()
) -> ActivityRefresh:
    """Recompute the days new bronze parts touch (and ``also_days``: a backfill)."""
    plan = plan_refresh(layout, STAGE, BRONZE, lambda h: part_days(layout, h), force_full)
    report = ActivityRefresh(full=plan.full)
    changes = Changes(full=plan.full)
    days, chunks = rebuild_chunks(layout, plan, SILVER, also_days, FULL_CHUNK_DAYS)
    for chunk in chunks:
        n_sessions, n_samples, parts = _recompute(layout, plan, chunk, changes)
        report.sessions += n_sessions
        report.samples += n_samples
        report.parts_read |= parts
    report.days = len(days)
    if chunks or plan.full:
        record_changes(layout, STAGE, changes)
    write_index(layout, STAGE, plan.index)
    return report
