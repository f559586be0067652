"""Silver activity tables from bronze: all sources unioned, intervals measured."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import polars as pl

from pipelines.activities.from_fit import fit_activity_model
from pipelines.activities.from_garmin import garmin_activity_model
from pipelines.activities.model import BOUND_SCHEMA, SAMPLE_SCHEMA, SESSION_SCHEMA
from pipelines.fit.decode import (
    EVENT_SCHEMA,
    FILE_SCHEMA,
    LAP_SCHEMA,
    LENGTH_SCHEMA,
    RECORD_SCHEMA,
)
from pipelines.fit.decode import SESSION_SCHEMA as FIT_SESSION_SCHEMA
from pipelines.fit.ingest import LINK_SCHEMA
from pipelines.garmin.push import BRONZE_TABLES
from pipelines.intervals import clean_samples, interval_metrics
from pipelines.lake.io import scan_parts
from pipelines.lake.layout import LakeLayout
from pipelines.lake.stage import LINEAGE_SCHEMA

GARMIN_ACTIVITY_TABLES = (
    "garmin_activities",
    "garmin_activity_details",
    "garmin_activity_samples",
    "garmin_activity_laps",
)
FIT_TABLES = {
    "fit_files": FILE_SCHEMA,
    "fit_sessions": FIT_SESSION_SCHEMA,
    "fit_laps": LAP_SCHEMA,
    "fit_records": RECORD_SCHEMA,
    "fit_events": EVENT_SCHEMA,
    "fit_lengths": LENGTH_SCHEMA,
}


def bronze(layout: LakeLayout, table: str, parts: Iterable[str] | None = None) -> pl.LazyFrame:
    """A bronze table: every part, or only the parts (input sha256) listed."""
    schema = BRONZE_TABLES.get(table) or FIT_TABLES[table]
    extra = {"user_id": pl.String()} if table in FIT_TABLES else {}
    if table == "fit_files":
        extra |= LINK_SCHEMA
    return scan_parts(layout.bronze_dir(table), {**schema, **extra, **LINEAGE_SCHEMA}, parts)


# A FIT file and a Garmin API summary of one activity start within a few seconds.
SAME_START_TOLERANCE_S = 5.0

Model = tuple[pl.LazyFrame, pl.LazyFrame, pl.LazyFrame]


def link_by_start(fit_sessions: pl.LazyFrame, api_sessions: pl.LazyFrame) -> pl.LazyFrame:
    """FIT session_id → API session_id for the same user starting within the tolerance
    (only FIT sessions not already sharing an id through a ping's activityId)."""
    start = pl.col("start_time_utc").dt.epoch("ms") / 1000.0
    api = api_sessions.select(
        "user_id", pl.col("session_id").alias("api_session_id"), start.alias("api_start_s")
    ).sort("api_start_s")
    return (
        fit_sessions.join(api_sessions.select("session_id"), on="session_id", how="anti")
        .select("user_id", "session_id", start.alias("start_s"))
        .sort("start_s")
        .join_asof(
            api,
            left_on="start_s",
            right_on="api_start_s",
            by="user_id",
            strategy="nearest",
            tolerance=SAME_START_TOLERANCE_S,
            check_sortedness=False,
        )
        .filter(pl.col("api_session_id").is_not_null())
        .select("session_id", "api_session_id")
    )


def merge_sources(api: Model, fit: Model) -> Model:
    """One row per real activity: FIT samples and laps preferred (full rate, device totals),
    ids the API knows (activityId, summaryId) kept; ``sources`` says what contributed."""
    links = link_by_start(fit[0], api[0])

    def relabel(frame: pl.LazyFrame) -> pl.LazyFrame:
        return (
            frame.join(links, on="session_id", how="left")
            .with_columns(pl.coalesce("api_session_id", "session_id").alias("session_id"))
            .drop("api_session_id")
        )

    fit_sessions, fit_samples, fit_bounds = (relabel(f) for f in fit)
    twins = api[0].select(
        "session_id",
        pl.col("activity_id").alias("api_activity_id"),
        pl.col("summary_id").alias("api_summary_id"),
    )
    fit_sessions = (
        fit_sessions.join(twins, on="session_id", how="left")
        .with_columns(
            pl.coalesce("activity_id", "api_activity_id").alias("activity_id"),
            pl.coalesce("summary_id", "api_summary_id").alias("summary_id"),
            pl.when(
                pl.col("api_summary_id").is_not_null() | pl.col("api_activity_id").is_not_null()
            )
            .then(pl.lit("fit,garmin_api"))
            .otherwise(pl.lit("fit"))
            .alias("sources"),
        )
        .drop("api_activity_id", "api_summary_id")
    )
    fit_ids = fit_sessions.select("session_id")
    api_only = [frame.join(fit_ids, on="session_id", how="anti") for frame in api]
    # Guards for one activity reaching us as several FIT files linked to the same API id.
    return (
        pl.concat(
            [api_only[0].with_columns(pl.lit("garmin_api").alias("sources")), fit_sessions]
        ).unique("session_id", keep="first", maintain_order=True),
        pl.concat([api_only[1], fit_samples]),
        pl.concat([api_only[2], fit_bounds]).unique(
            ["session_id", "kind", "interval_index"], keep="first", maintain_order=True
        ),
    )


@dataclass
class SilverActivities:
    sessions: pl.DataFrame
    samples: pl.DataFrame
    bounds: pl.DataFrame
    intervals: pl.DataFrame


def build_silver_activities(read: Callable[[str], pl.LazyFrame]) -> SilverActivities:
    """Sessions, samples, bounds and measured intervals from the bronze tables ``read`` gives."""
    garmin = garmin_activity_model(*(read(table) for table in GARMIN_ACTIVITY_TABLES))
    fit = fit_activity_model(*(read(table) for table in FIT_TABLES))
    sessions, samples, bounds = merge_sources(garmin, fit)
    # One pass over bronze for all three (shared subplans are computed once).
    sessions_df, raw_samples, bounds_df = pl.collect_all([sessions, samples, bounds])
    # Odometers read 0 at the session start: where the first sample comes later, the start
    # gets a sample of its own (see clean_samples).
    start_s = pl.col("start_time_utc").dt.epoch("ms") / 1000.0
    session_starts = sessions_df.lazy().select(
        "session_id", start_s.alias("start_s"), (start_s + pl.col("elapsed_s")).alias("end_s")
    )
    samples_df = clean_samples(raw_samples.lazy(), session_starts).collect()
    del raw_samples
    measured = interval_metrics(samples_df.lazy(), bounds_df.lazy())
    intervals = measured.join(
        bounds_df.lazy().drop("start_s", "end_s"),
        on=["session_id", "kind", "interval_index"],
        how="left",
    ).collect()
    return SilverActivities(
        sessions=sessions_df.select(*SESSION_SCHEMA, "sources").sort(
            "start_time_utc", "session_id"
        ),
        samples=samples_df.select(list(SAMPLE_SCHEMA)),
        bounds=bounds_df.select(list(BOUND_SCHEMA)),
        intervals=intervals,
    )
