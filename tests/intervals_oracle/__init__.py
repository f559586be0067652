"""Frozen oracle: the numpy interval alignment as it was before it became Polars expressions
(pipelines/intervals/alignment.py and arrays.py at commit 29cecd5). Test code only: the
equivalence tests compare the product's every column and flag with it; the speed benchmark
runs it side by side. Do not change it (it is the reference, bugs included)."""

from .alignment import clean_samples, interpolate_at, interval_metrics

__all__ = ["clean_samples", "interpolate_at", "interval_metrics"]
