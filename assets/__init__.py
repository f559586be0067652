"""Dagster assets: thin wiring around the Dagster-free logic in ``pipelines.*``.

raw (ledger) → bronze (per source) → silver (activity model, intervals) → warehouse (DuckDB
tables + gold Parquet), with asset checks at the layer boundaries.
"""
