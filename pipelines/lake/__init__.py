"""The Parquet lake: layout, atomic writes, the raw-file ledger and quarantine (no Dagster)."""
