"""Silver wellness tables: the newest version of every summary, series of that version only.

Garmin re-delivers updated summaries (an epoch of 720 s later replaced by 900 s, a sleep moving
from *_TENTATIVE to *_FINAL) and re-sends whole feeds. Per (user, type, summaryId) the version
that is longest, then final, then received last wins; older versions stay in bronze.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from pipelines.activities.build import bronze
from pipelines.garmin.lifecycle import filter_permitted, permission_changes
from pipelines.garmin.summaries import SPECS
from pipelines.lake.layout import LakeLayout
from pipelines.lake.partitions import (
    DAY,
    Changes,
    partition_day,
    partition_files,
    parts_for,
    plan_refresh,
    rebuild_chunks,
    record_changes,
    replace_partitions,
    scan_silver,
    write_index,
)

LIFECYCLE_TABLES = ("garmin_permission_changes", "garmin_deregistrations")
WELLNESS_TABLES = tuple(s.table for s in SPECS.values() if s.table not in LIFECYCLE_TABLES)
TABLE_PERMISSION = {s.table: s.permission for s in SPECS.values()}


def version_key() -> pl.Expr:
    # summaryId identifies a summary; without one, the start instant does.
    return pl.coalesce(pl.col("summary_id"), pl.col("start_time_utc").cast(pl.String), pl.lit(""))


def newest_versions(frame: pl.LazyFrame) -> pl.LazyFrame:
    names = frame.collect_schema().names()
    order = []
    if "duration_s" in names:
        order.append(pl.col("duration_s").fill_null(-1))
    if "validation" in names:
        order.append(
            pl.col("validation").str.to_uppercase().str.ends_with("FINAL").fill_null(False)
        )
    order += [pl.col("received_at"), pl.col("source_sha256"), pl.col("item_index")]
    return (
        frame.with_columns(version_key().alias("version_key"))
        .sort(order, nulls_last=False)
        .unique(subset=["user_id", "summary_type", "version_key"], keep="last", maintain_order=True)
        .drop("version_key")
    )


def series_of(versions: pl.LazyFrame, series: pl.LazyFrame) -> pl.LazyFrame:
    """Time-series rows belonging to the chosen versions only."""
    keys = ["user_id", "summary_type", "summary_id", "source_sha256"]
    return series.join(versions.select(keys).unique(), on=keys, how="semi")


def build_silver_wellness(
    bronze: Callable[[str], pl.LazyFrame], changes: pl.LazyFrame
) -> tuple[dict[str, pl.DataFrame], dict[str, int]]:
    """Newest permitted version of every wellness summary, plus their series and sleep levels.

    Returns (tables by silver name, rows dropped per table by permission changes)."""
    tables: dict[str, pl.LazyFrame] = {}
    dropped: dict[str, pl.LazyFrame] = {}
    for table in WELLNESS_TABLES:
        versions = newest_versions(bronze(table))
        permitted = filter_permitted(versions, changes, TABLE_PERMISSION[table], "start_time_utc")
        tables[table] = permitted
        dropped[table] = pl.concat(
            [versions.select(pl.len().cast(pl.Int64)), permitted.select(-pl.len().cast(pl.Int64))]
        ).sum()
    chosen = pl.concat(
        [
            frame.select("user_id", "summary_type", "summary_id", "source_sha256")
            for frame in tables.values()
        ]
    )
    tables["garmin_timeseries"] = series_of(chosen, bronze("garmin_timeseries"))
    tables["garmin_sleep_levels"] = bronze("garmin_sleep_levels").join(
        tables["garmin_sleeps"].select("user_id", "summary_id", "source_sha256"),
        on=["user_id", "summary_id", "source_sha256"],
        how="semi",
    )
    names = list(tables) + [f"dropped:{t}" for t in dropped]
    collected = pl.collect_all([*tables.values(), *dropped.values()])
    frames = dict(zip(names, collected, strict=True))
    counts = {
        name.removeprefix("dropped:"): int(frame.item())
        for name, frame in frames.items()
        if name.startswith("dropped:")
    }
    return {n: f for n, f in frames.items() if not n.startswith("dropped:")}, counts


# --- incremental silver ---------------------------------------------------------------------
#
# Summaries are partitioned by the UTC day they start on; their series and sleep levels go with
# them. New parts touch their summaries' days; those days ± 1 (a final sleep may start minutes
# away from its tentative version, across midnight) and the days of other versions of the same
# summaries are recomputed (pipelines.lake.partitions). A new permission change or a missing
# index rebuilds everything.

STAGE = "wellness"
CHILD_TABLES = ("garmin_timeseries", "garmin_sleep_levels")
SILVER_TABLES = (*WELLNESS_TABLES, *CHILD_TABLES)
BRONZE_INPUTS = (*WELLNESS_TABLES, *CHILD_TABLES, "garmin_permission_changes")
FULL_CHUNK_DAYS = 62


@dataclass
class WellnessRefresh:
    full: bool = False
    days: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)


def part_days(read: Callable[[str], pl.LazyFrame]) -> pl.DataFrame:
    """(part, UTC day, summary key): every version of a summary is read together."""
    frames = [
        read(table).select(
            "source_sha256",
            partition_day(pl.col("start_time_utc")).alias("day"),
            pl.concat_str("user_id", pl.lit("|"), "summary_type", pl.lit("|"), version_key()).alias(
                "key"
            ),
        )
        for table in WELLNESS_TABLES
    ]
    return pl.concat(frames).unique().collect()


def with_days(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Each silver frame with its partition day (children: their summary's)."""
    out = {
        table: frame.with_columns(partition_day(pl.col("start_time_utc")).alias(DAY))
        for table, frame in tables.items()
        if table in WELLNESS_TABLES
    }
    keys = ["user_id", "summary_type", "summary_id", "source_sha256"]
    parents = pl.concat([frame.select(*keys, DAY) for frame in out.values()]).unique(keys)
    out["garmin_timeseries"] = tables["garmin_timeseries"].join(
        parents, on=keys, how="inner", nulls_equal=True
    )
    sleeps = out["garmin_sleeps"].select("user_id", "summary_id", "source_sha256", DAY)
    out["garmin_sleep_levels"] = tables["garmin_sleep_levels"].join(
        sleeps.unique(["user_id", "summary_id", "source_sha256"]),
        on=["user_id", "summary_id", "source_sha256"],
        how="inner",
        nulls_equal=True,
    )
    return out


def summary_keys(frames: Iterable[pl.DataFrame]) -> list[str]:
    """Each summary as a JSON ``[user_id, summary_type, summary_id or ""]`` (the warehouse
    deletes the series of these summaries)."""
    keys = pl.concat(
        [f.select("user_id", "summary_type", pl.col("summary_id").fill_null("")) for f in frames]
    ).unique()
    return [json.dumps(row) for row in keys.rows()]


def refresh_silver_wellness(
    layout: LakeLayout, force_full: bool = False, also_days: Iterable[date] = ()
) -> WellnessRefresh:
    """Recompute the days new bronze parts touch (and ``also_days``: a backfill)."""
    plan = plan_refresh(
        layout,
        STAGE,
        BRONZE_INPUTS,
        lambda h: part_days(lambda table: bronze(layout, table, h)),
        force_full,
        rebuild_on=["garmin_permission_changes"],  # it may drop rows on any later day
    )
    changes_log = permission_changes(bronze(layout, "garmin_permission_changes"))
    report = WellnessRefresh(full=plan.full)
    changes = Changes(full=plan.full)
    days, chunks = rebuild_chunks(layout, plan, SILVER_TABLES, also_days, FULL_CHUNK_DAYS)
    for chunk in chunks:
        parts = parts_for(plan, chunk)
        old = [
            scan_silver(layout, t, chunk).select("user_id", "summary_type", "summary_id").collect()
            for t in WELLNESS_TABLES
            if partition_files(layout, t, chunk)
        ]
        tables, dropped = build_silver_wellness(
            lambda table, parts=parts: bronze(layout, table, parts), changes_log
        )
        dated = with_days(tables)
        for table, frame in dated.items():
            frame = frame.filter(pl.col(DAY).is_in(list(chunk)))
            replace_partitions(layout, table, frame, chunk)
            report.rows[table] = report.rows.get(table, 0) + frame.height
            if table in WELLNESS_TABLES:
                old.append(frame.select("user_id", "summary_type", "summary_id"))
        for table, n in dropped.items():
            report.dropped[table] = report.dropped.get(table, 0) + n
        changes.add("day", chunk)
        changes.add("summary", summary_keys(old) if old else [])
    report.days = len(days)
    if chunks or plan.full:
        record_changes(layout, STAGE, changes)
    write_index(layout, STAGE, plan.index)
    return report
