"""`wearhouse serve`: the Garmin webhook receiver (plain Python and ASGI, no Dagster)."""
