"""The code location: what `dagster dev -w workspace.yaml` and `wearhouse run` both load."""

from __future__ import annotations

import dagster as dg

from assets import backfill, bronze, checks, lifecycle, plans, raw, silver, training, warehouse
from pipelines.jobs import reprocess_days_job, wearhouse_job
from pipelines.resources import build_resources
from pipelines.schedules import daily_reconcile_schedule
from pipelines.sensors import landing_sensor
from pipelines.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.resolve()
    return dg.Definitions(
        assets=dg.load_assets_from_modules(
            [raw, bronze, lifecycle, plans, silver, warehouse, backfill, training]
        ),
        asset_checks=dg.load_asset_checks_from_modules([checks]),
        jobs=[wearhouse_job, reprocess_days_job],
        schedules=[daily_reconcile_schedule],
        sensors=[landing_sensor],
        resources=build_resources(settings),
    )


defs = build_definitions()
