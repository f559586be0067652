"""Garmin Activity API bronze → the silver activity model.

Versions: activities and activityDetails re-delivered for the same activity are merged, the
newest non-null value of each field winning; samples and laps come from the newest
activityDetails delivery only.
"""

from __future__ import annotations

import polars as pl

from pipelines.activities.model import (
    BOUND_SCHEMA,
    SAMPLE_SCHEMA,
    SESSION_SCHEMA,
    conform,
    session_id_expr,
)

_SUMMARY_COLUMNS = [
    "is_parent",
    "parent_summary_id",
    "user_id",
    "summary_id",
    "activity_id",
    "activity_type",
    "start_time_utc",
    "start_time_local",
    "utc_offset_s",
    "duration_s",
    "distance_m",
    "avg_hr_bpm",
    "max_hr_bpm",
    "device_name",
    "source_sha256",
    "received_at",
]


def activity_key() -> pl.Expr:
    # activityId when the item carries it; else the summaryId (never parsed: DESIGN.md §1).
    return pl.coalesce(
        pl.concat_str(pl.lit("activity:"), pl.col("activity_id").cast(pl.String)),
        pl.concat_str(pl.lit("summary:"), pl.col("summary_id")),
    )


def _newest_details(details: pl.LazyFrame) -> pl.LazyFrame:
    """(user, activity key) → the delivery whose samples and laps are current."""
    return (
        details.with_columns(activity_key().alias("activity_key"))
        .sort("received_at", "source_sha256")
        .group_by("user_id", "activity_key")
        .agg(pl.col("source_sha256").last(), pl.col("summary_id").last())
    )


def garmin_activity_model(
    activities: pl.LazyFrame,
    details: pl.LazyFrame,
    samples: pl.LazyFrame,
    laps: pl.LazyFrame,
) -> tuple[pl.LazyFrame, pl.LazyFrame, pl.LazyFrame]:
    """Return (sessions, samples, bounds) in the silver model."""
    versions = pl.concat(
        [activities.select(_SUMMARY_COLUMNS), details.select(_SUMMARY_COLUMNS)]
    ).with_columns(activity_key().alias("activity_key"))
    merged = (
        versions.sort("received_at", "source_sha256")
        .group_by("user_id", "activity_key")
        .agg(pl.all().drop_nulls().last())
        .with_columns(
            session_id_expr(pl.concat_str("user_id", pl.lit("|"), "activity_key")).alias(
                "session_id"
            )
        )
    )
    current = _newest_details(details)
    ids = merged.select("user_id", "activity_key", "session_id")
    current = current.join(ids, on=["user_id", "activity_key"])

    model_samples = samples.join(
        current.select("user_id", "source_sha256", "summary_id", "session_id"),
        on=["user_id", "source_sha256", "summary_id"],
    ).select(
        "session_id",
        pl.col("start_epoch_s").cast(pl.Float64).alias("t_s"),
        "distance_m",
        "timer_s",
        "elevation_m",
        "hr_bpm",
        "speed_mps",
        pl.coalesce("cadence_spm", "cadence_rpm", "swim_cadence_spm").alias("cadence"),
        "power_w",
        "lat_deg",
        "lon_deg",
    )
    per_session = model_samples.group_by("session_id").agg(
        pl.col("timer_s").max().alias("sample_timer_s"),
        pl.col("t_s").max().alias("last_sample_s"),
    )
    sessions = merged.join(per_session, on="session_id", how="left").select(
        "session_id",
        "user_id",
        pl.lit("garmin_api").alias("source"),
        "activity_id",
        "summary_id",
        "source_sha256",
        pl.col("activity_type").str.to_lowercase().alias("sport"),
        "start_time_utc",
        "start_time_local",
        "utc_offset_s",
        pl.col("duration_s").cast(pl.Float64).alias("elapsed_s"),
        pl.coalesce("sample_timer_s", pl.col("duration_s").cast(pl.Float64)).alias("timer_s"),
        "distance_m",
        pl.col("avg_hr_bpm").cast(pl.Float64).alias("avg_hr"),
        pl.col("max_hr_bpm").cast(pl.Float64).alias("max_hr"),
        pl.col("device_name").alias("device"),
        pl.lit("ok").alias("integrity"),
        pl.col("is_parent").fill_null(False).alias("is_multisport_parent"),
        "parent_summary_id",
        "last_sample_s",
    )

    session_end = sessions.select(
        "session_id",
        pl.coalesce(
            pl.col("start_time_utc").dt.epoch("ms") / 1000 + pl.col("elapsed_s"),
            pl.col("last_sample_s"),
        ).alias("session_end_s"),
    )
    bounds = (
        laps.join(
            current.select("user_id", "source_sha256", "summary_id", "session_id"),
            on=["user_id", "source_sha256", "summary_id"],
        )
        .join(session_end, on="session_id", how="left")
        .sort("session_id", "start_epoch_s")
        .unique(subset=["session_id", "start_epoch_s"], keep="first", maintain_order=True)
        .with_columns(
            pl.lit("lap").alias("kind"),
            pl.int_range(pl.len()).over("session_id").cast(pl.Int64).alias("interval_index"),
            pl.col("start_epoch_s").cast(pl.Float64).alias("start_s"),
            pl.coalesce(
                pl.col("start_epoch_s").shift(-1).over("session_id").cast(pl.Float64),
                pl.col("session_end_s"),
            ).alias("end_s"),
        )
        .filter(pl.col("end_s") > pl.col("start_s"))
    )
    return (
        conform(sessions, SESSION_SCHEMA),
        conform(model_samples, SAMPLE_SCHEMA),
        conform(bounds, BOUND_SCHEMA),
    )
