"""FIT files (any device) decoded into bronze rows (no Dagster)."""
