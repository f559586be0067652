"""Silver activity tables from bronze: all sources unioned, intervals measured."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipelines.activities.from_fit import fit_activity_model
from pipelines.activities.from_garmin import garmin_activity_model
from pipelines.activities.model import BOUND_SCHEMA, SAMPLE_SCHEMA, SESSION_SCHEMA
from pipelines.fit.decode import (
    EVENT_SCHEMA,
    FILE_SCHEMA,
    LAP_SCHEMA,
    RECORD_SCHEMA,
)
from pipelines.fit.decode import SESSION_SCHEMA as FIT_SESSION_SCHEMA
from pipelines.garmin.push import BRONZE_TABLES
from pipelines.intervals import clean_samples, interval_metrics
from pipelines.lake.io import scan_parts
from pipelines.lake.layout import LakeLayout
from pipelines.lake.stage import LINEAGE_SCHEMA

FIT_TABLES = {
    "fit_files": FILE_SCHEMA,
    "fit_sessions": FIT_SESSION_SCHEMA,
    "fit_laps": LAP_SCHEMA,
    "fit_records": RECORD_SCHEMA,
    "fit_events": EVENT_SCHEMA,
}


def bronze(layout: LakeLayout, table: str) -> pl.LazyFrame:
    schema = BRONZE_TABLES.get(table) or FIT_TABLES[table]
    extra = {"user_id": pl.String()} if table in FIT_TABLES else {}
    return scan_parts(layout.bronze_dir(table), {**schema, **extra, **LINEAGE_SCHEMA})


@dataclass
class SilverActivities:
    sessions: pl.DataFrame
    samples: pl.DataFrame
    bounds: pl.DataFrame
    intervals: pl.DataFrame


def build_silver_activities(layout: LakeLayout) -> SilverActivities:
    garmin = garmin_activity_model(
        bronze(layout, "garmin_activities"),
        bronze(layout, "garmin_activity_details"),
        bronze(layout, "garmin_activity_samples"),
        bronze(layout, "garmin_activity_laps"),
    )
    fit = fit_activity_model(*(bronze(layout, table) for table in FIT_TABLES))
    sessions = pl.concat([garmin[0], fit[0]]).unique("session_id", keep="last")
    samples = clean_samples(pl.concat([garmin[1], fit[1]]))
    bounds = pl.concat([garmin[2], fit[2]])
    sessions_df, samples_df, bounds_df = pl.collect_all([sessions, samples, bounds])
    measured = interval_metrics(samples_df.lazy(), bounds_df.lazy())
    intervals = measured.join(
        bounds_df.lazy().drop("start_s", "end_s"),
        on=["session_id", "kind", "interval_index"],
        how="left",
    ).collect()
    return SilverActivities(
        sessions=sessions_df.select(list(SESSION_SCHEMA)).sort("start_time_utc", "session_id"),
        samples=samples_df.select(list(SAMPLE_SCHEMA)),
        bounds=bounds_df.select(list(BOUND_SCHEMA)),
        intervals=intervals,
    )
