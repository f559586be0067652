"""Self-contained HTML training reports read from the DuckDB warehouse (no Dagster here)."""

from pipelines.report.html import build_report, write_report

__all__ = ["build_report", "write_report"]
