"""Garmin Connect webhook payloads (push bodies, pings) parsed into bronze rows (no Dagster)."""
