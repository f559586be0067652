import dagster as dg

from pipelines.jobs import wearhouse_job

# Daily reconciliation: picks up anything the sensor missed and re-checks every layer.
daily_reconcile_schedule = dg.ScheduleDefinition(
    name="daily_reconcile_schedule",
    job=wearhouse_job,
    cron_schedule="15 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
