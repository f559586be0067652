"""wearhouse: Garmin webhooks and FIT files into a Parquet lake and a DuckDB warehouse.

Dagster wiring lives at this level (definitions, resources, jobs, schedules, sensors, CLI);
the Dagster-free domain logic lives in the subpackages (``garmin``, ``fit``, ``intervals``,
``lake``, ``warehouse``).
"""
