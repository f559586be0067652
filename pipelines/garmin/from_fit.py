"""Garmin-shaped ``activityDetails`` bodies built from a decoded FIT file.

Used for the bundled demo data, tests and the accuracy benchmark: the FIT records become
``samples`` and only the lap start times survive as ``laps`` (exactly what Garmin delivers),
while the FIT lap messages keep the device's own totals as the truth to compare against.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from pipelines.fit.decode import FitDecoded

_SAMPLE_KEYS = {
    "distance_m": "totalDistanceInMeters",
    "speed_mps": "speedMetersPerSecond",
    "hr_bpm": "heartRate",
    "elevation_m": "elevationInMeters",
    "lat_deg": "latitudeInDegree",
    "lon_deg": "longitudeInDegree",
    "power_w": "powerInWatts",
}


def _epoch(column: str) -> pl.Expr:
    return (pl.col(column).dt.epoch("ms") // 1000).cast(pl.Int64)


def activity_details_item(
    decoded: FitDecoded,
    user_id: str,
    activity_id: int,
    session_index: int = 0,
    keep_every: pl.Series | None = None,
) -> dict[str, Any]:
    """One ``activityDetails`` item for one FIT session. ``keep_every`` (bool per record)
    thins the records to imitate smart recording."""
    session = decoded.sessions.row(session_index, named=True)
    start = int(session["start_time_utc"].timestamp())
    end = start + round(session["total_elapsed_time_s"] or 0)
    records = decoded.records
    if keep_every is not None:
        records = records.filter(keep_every)
    records = records.with_columns(_epoch("time_utc").alias("t")).filter(
        pl.col("t").is_between(start, end)
    )
    timer = (pl.col("t") - start).cast(pl.Int64)
    samples = records.select(
        pl.col("t").alias("startTimeInSeconds"),
        *[pl.col(src).alias(dst) for src, dst in _SAMPLE_KEYS.items()],
        timer.alias("timerDurationInSeconds"),
        timer.alias("clockDurationInSeconds"),
    ).to_dicts()
    samples = [{k: v for k, v in s.items() if v is not None} for s in samples]
    laps = (
        decoded.laps.filter(_epoch("start_time_utc").is_between(start, end))
        .select(_epoch("start_time_utc").alias("startTimeInSeconds"))
        .to_dicts()
    )
    sport = (session["sport"] or "other").upper()
    return {
        "userId": user_id,
        "summaryId": f"{activity_id}-detail",
        "activityId": activity_id,
        "summary": {
            "activityId": activity_id,
            "activityType": sport,
            "startTimeInSeconds": start,
            "startTimeOffsetInSeconds": int(decoded.file["utc_offset_s"][0] or 0),
            "durationInSeconds": end - start,
            "distanceInMeters": session["total_distance_m"],
            "averageHeartRateInBeatsPerMinute": _int(session["avg_hr_bpm"]),
            "maxHeartRateInBeatsPerMinute": _int(session["max_hr_bpm"]),
            "averageSpeedInMetersPerSecond": session["avg_speed_mps"],
            "deviceName": decoded.file["product"][0],
        },
        "samples": samples,
        "laps": laps,
    }


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)
