"""Silver wellness tables: the newest version of every summary, series of that version only.

Garmin re-delivers updated summaries (an epoch of 720 s later replaced by 900 s, a sleep moving
from *_TENTATIVE to *_FINAL) and re-sends whole feeds. Per (user, type, summaryId) the version
that is longest, then final, then received last wins; older versions stay in bronze.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from pipelines.garmin.lifecycle import filter_permitted
from pipelines.garmin.summaries import SPECS

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
