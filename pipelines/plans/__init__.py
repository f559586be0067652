"""Coaches' training plans: parsing (native YAML/JSON, Garmin Training API V2) and matching
planned sessions and steps to what was run (no Dagster)."""
