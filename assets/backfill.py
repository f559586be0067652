"""Re-derive chosen days from bronze: a backfill after a change in how silver is computed.

The regular job already recomputes whatever new inputs touch; this daily-partitioned asset is
for operators: select a range of days in the UI (or ``dagster asset backfill``) and they are
recomputed in one run (``BackfillPolicy.single_run``: the lake takes one writer at a time). The
warehouse and gold take the rewritten days on the next ``wearhouse_job`` run.
"""

import warnings
from datetime import timedelta

import dagster as dg

from assets.plans import PlanMatchConfig
from pipelines.activities.refresh import refresh_silver_activities
from pipelines.garmin.wellness import refresh_silver_wellness
from pipelines.plans.matching import MatchConfig
from pipelines.plans.refresh import refresh_plan_matches
from pipelines.resources import WearhouseLake

daily_partitions = dg.DailyPartitionsDefinition(start_date="2000-01-01", end_offset=1)

# backfill_policy is a beta parameter: chosen on purpose, so its warning is not shown to users.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    single_run_asset = dg.asset(
        group_name="backfill",
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description="Silver activities, wellness and plan matches of the selected UTC days "
        "recomputed from bronze (applied to the warehouse by the next wearhouse_job run).",
    )


@single_run_asset
def reprocessed_days(
    context: dg.AssetExecutionContext, lake: WearhouseLake, config: PlanMatchConfig
) -> dg.MaterializeResult:
    window = context.partition_time_window
    first, end = window.start.date(), window.end.date()
    days = {first + timedelta(days=k) for k in range((end - first).days)}
    activities = refresh_silver_activities(lake.layout, also_days=days)
    wellness = refresh_silver_wellness(lake.layout, also_days=days)
    settings = MatchConfig(
        tolerance_days=config.tolerance_days,
        green=(config.green_low, config.green_high),
        yellow=(config.yellow_low, config.yellow_high),
    )
    plans = refresh_plan_matches(lake.layout, settings, config.athletes_per_batch, days)
    return dg.MaterializeResult(
        metadata={
            "days": len(days),
            "sessions_written": activities.sessions,
            "wellness_rows_written": sum(wellness.rows.values()),
            "planned_days_rematched": plans.days,
        }
    )
