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
    replace_partition,
    replace_partitions,
    scan_silver,
    write_index,
    write_schema,
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


# What ties a child row to its summary version: a series row to any summary, a sleep level to
# a sleep.
SERIES_KEYS = ["user_id", "summary_type", "summary_id", "source_sha256"]
SLEEP_KEYS = ["user_id", "summary_id", "source_sha256"]


def series_of(versions: pl.LazyFrame, series: pl.LazyFrame) -> pl.LazyFrame:
    """Time-series rows belonging to the chosen versions only."""
    return series.join(versions.select(SERIES_KEYS).unique(), on=SERIES_KEYS, how="semi")


def build_summaries(
    bronze: Callable[[str], pl.LazyFrame], changes: pl.LazyFrame
) -> tuple[dict[str, pl.DataFrame], dict[str, int]]:
    """Newest permitted version of every wellness summary (their series and sleep levels
    are read apart, see ``children_of``).

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
    collected = pl.collect_all([*tables.values(), *dropped.values()])
    frames = dict(zip(tables, collected[: len(tables)], strict=True))
    counts = {
        table: int(frame.item())
        for table, frame in zip(dropped, collected[len(tables) :], strict=True)
    }
    return frames, counts


def build_silver_wellness(
    bronze: Callable[[str], pl.LazyFrame], changes: pl.LazyFrame
) -> tuple[dict[str, pl.DataFrame], dict[str, int]]:
    """Newest permitted version of every wellness summary, plus their series and sleep levels,
    all in memory (the incremental refresh writes the children day by day instead).

    Returns (tables by silver name, rows dropped per table by permission changes)."""
    tables, counts = build_summaries(bronze, changes)
    chosen = pl.concat([frame.select(SERIES_KEYS) for frame in tables.values()])
    tables["garmin_timeseries"] = series_of(chosen.lazy(), bronze("garmin_timeseries")).collect()
    tables["garmin_sleep_levels"] = (
        bronze("garmin_sleep_levels")
        .join(tables["garmin_sleeps"].select(SLEEP_KEYS).lazy(), on=SLEEP_KEYS, how="semi")
        .collect()
    )
    return tables, counts


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


def dated_summaries(
    tables: dict[str, pl.DataFrame], days: Iterable[date]
) -> dict[str, pl.DataFrame]:
    """Each summary table's rows dated on ``days``, with their partition day."""
    days = list(days)
    return {
        table: frame.with_columns(partition_day(pl.col("start_time_utc")).alias(DAY)).filter(
            pl.col(DAY).is_in(days)
        )
        for table, frame in tables.items()
    }


def child_parents(dated: dict[str, pl.DataFrame]) -> dict[str, tuple[list[str], pl.DataFrame]]:
    """Per child table, the keys tying a row to its summary version and those versions' keys
    with their day. A row with a null key belongs to no version."""
    series = pl.concat([frame.select(*SERIES_KEYS, DAY) for frame in dated.values()])
    sleeps = dated["garmin_sleeps"].select(*SLEEP_KEYS, DAY)
    return {
        "garmin_timeseries": (SERIES_KEYS, series.drop_nulls(SERIES_KEYS).unique(SERIES_KEYS)),
        "garmin_sleep_levels": (SLEEP_KEYS, sleeps.drop_nulls(SLEEP_KEYS).unique(SLEEP_KEYS)),
    }


def children_of(
    read: Callable[[list[str]], pl.LazyFrame], parents: pl.DataFrame, keys: list[str]
) -> pl.LazyFrame:
    """The child rows of ``parents`` (summary versions), lazily: only the parts they came from
    are read, the summary ids narrow the scan (row groups of other summaries are skipped by
    their statistics) before the rows are matched on every key."""
    ids = parents.get_column("summary_id").unique()
    return (
        read(parents.get_column("source_sha256").unique().to_list())
        .filter(pl.col("summary_id").is_in(ids.implode()))
        .join(parents.select(keys).lazy(), on=keys, how="semi")
    )


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
        summaries, dropped = build_summaries(
            lambda table, parts=parts: bronze(layout, table, parts), changes_log
        )
        dated = dated_summaries(summaries, chunk)
        for table, frame in dated.items():
            replace_partitions(layout, table, frame, chunk)
            report.rows[table] = report.rows.get(table, 0) + frame.height
            old.append(frame.select("user_id", "summary_type", "summary_id"))
        # The children (millions of series rows for a large body) are streamed from bronze
        # into each day's partition: only one day's summary keys are held.
        for table, (keys, parents) in child_parents(dated).items():
            write_schema(layout, table, bronze(layout, table, ()).collect_schema())
            for day in sorted(chunk):
                of_day = parents.filter(pl.col(DAY) == day)
                rows = children_of(lambda h, t=table: bronze(layout, t, h), of_day, keys)
                written = replace_partition(layout, table, day, rows)
                report.rows[table] = report.rows.get(table, 0) + written
        for table, n in dropped.items():
            report.dropped[table] = report.dropped.get(table, 0) + n
        changes.add("day", chunk)
        changes.add("summary", summary_keys(old) if old else [])
    report.days = len(days)
    if chunks or plan.full:
        record_changes(layout, STAGE, changes)
    write_index(layout, STAGE, plan.index)
    return report
