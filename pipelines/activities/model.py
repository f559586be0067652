"""Schemas of the silver activity model and the stable session id."""

from __future__ import annotations

import hashlib

import polars as pl

UTC_TS = pl.Datetime("ms", "UTC")

SESSION_SCHEMA: dict[str, pl.DataType] = {
    "session_id": pl.String(),
    "user_id": pl.String(),
    "source": pl.String(),  # garmin_api | fit
    "activity_id": pl.Int64(),
    "summary_id": pl.String(),
    "source_sha256": pl.String(),  # the input the samples came from
    "sport": pl.String(),
    "sub_sport": pl.String(),
    "start_time_utc": UTC_TS,
    "start_time_local": pl.Datetime("ms"),
    "utc_offset_s": pl.Int64(),
    "elapsed_s": pl.Float64(),
    "timer_s": pl.Float64(),
    "distance_m": pl.Float64(),
    "avg_hr": pl.Float64(),
    "max_hr": pl.Float64(),
    "device": pl.String(),
    "integrity": pl.String(),
    # Garmin multisport: the parent summarizes its legs, which are sessions of their own.
    "is_multisport_parent": pl.Boolean(),
    "parent_summary_id": pl.String(),
}

SAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "session_id": pl.String(),
    "t_s": pl.Float64(),  # epoch seconds, UTC
    "distance_m": pl.Float64(),
    "timer_s": pl.Float64(),
    "elevation_m": pl.Float64(),
    "hr_bpm": pl.Float64(),
    "speed_mps": pl.Float64(),
    "cadence": pl.Float64(),
    "power_w": pl.Float64(),
    "lat_deg": pl.Float64(),
    "lon_deg": pl.Float64(),
}

BOUND_SCHEMA: dict[str, pl.DataType] = {
    "session_id": pl.String(),
    "kind": pl.String(),  # lap | workout_step | session
    "interval_index": pl.Int64(),
    "start_s": pl.Float64(),
    "end_s": pl.Float64(),
    "device_distance_m": pl.Float64(),
    "device_timer_s": pl.Float64(),
    "device_elapsed_s": pl.Float64(),
    "lap_trigger": pl.String(),
    "intensity": pl.String(),
    "wkt_step_index": pl.Int64(),
}


def conform(frame: pl.LazyFrame, schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    """Exactly the schema's columns, in order, missing ones null."""
    present = frame.collect_schema().names()
    return frame.select(
        [
            (pl.col(name) if name in present else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in schema.items()
        ]
    )


def _digest(key: str | None) -> str | None:
    return None if key is None else hashlib.sha256(key.encode()).hexdigest()[:20]


def session_id_expr(natural_key: pl.Expr) -> pl.Expr:
    """Stable across runs and machines (sha256 of the natural key; Polars' hash is not)."""
    return natural_key.map_elements(_digest, return_dtype=pl.String())
