"""The DuckDB warehouse built from ``sql/*.sql`` and its gold Parquet export (no Dagster)."""
