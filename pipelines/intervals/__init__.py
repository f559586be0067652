"""Laps and workout steps measured at their exact boundary instants (pure Polars, no Dagster)."""

from pipelines.intervals.alignment import (
    INTERVAL_COLUMNS,
    clean_samples,
    interpolate_at,
    interval_metrics,
)

__all__ = ["INTERVAL_COLUMNS", "clean_samples", "interpolate_at", "interval_metrics"]
