import dagster as dg

from pipelines.activities.build import FIT_TABLES, bronze
from pipelines.activities.refresh import refresh_silver_activities
from pipelines.garmin.lifecycle import (
    permission_changes,
    refresh_users_seen,
    seen_deliveries,
    users_table,
)
from pipelines.garmin.push import BRONZE_TABLES
from pipelines.garmin.wellness import refresh_silver_wellness
from pipelines.lake.erasure import read_audit
from pipelines.lake.io import write_parquet_atomic
from pipelines.lake.quarantine import read_quarantine
from pipelines.resources import WearhouseLake


@dg.asset(
    group_name="silver",
    deps=["user_erasure"],
    description="Sessions, samples and intervals of every source in one model; intervals "
    "measured at their exact boundaries. Partitioned by UTC day; only days new inputs touch "
    "are recomputed.",
)
def silver_activities(lake: WearhouseLake) -> dg.MaterializeResult:
    report = refresh_silver_activities(lake.layout)
    return dg.MaterializeResult(
        metadata={
            "full_rebuild": report.full,
            "days_recomputed": report.days,
            "sessions_written": report.sessions,
            "samples_written": report.samples,
            "bronze_parts_read": len(report.parts_read),
        }
    )


@dg.asset(
    group_name="silver",
    deps=["user_erasure"],
    description="All quarantine records of every stage in one table.",
)
def silver_quarantine(lake: WearhouseLake) -> dg.MaterializeResult:
    frame = read_quarantine(lake.layout)
    write_parquet_atomic(frame, lake.layout.silver_path("quarantine"))
    return dg.MaterializeResult(metadata={"records": frame.height})


@dg.asset(
    group_name="silver",
    deps=["user_erasure"],
    description="Newest permitted version of every wellness summary; series; sleep levels; "
    "the users table.",
)
def silver_wellness(lake: WearhouseLake) -> dg.MaterializeResult:
    layout = lake.layout
    report = refresh_silver_wellness(layout)
    tables = [t for t in (*BRONZE_TABLES, *FIT_TABLES) if t != "garmin_deregistrations"]
    seen = refresh_users_seen(layout, tables, lambda table, parts: bronze(layout, table, parts))
    changes = permission_changes(bronze(layout, "garmin_permission_changes"))
    users = users_table(seen_deliveries(seen), changes, read_audit(layout).lazy()).collect()
    write_parquet_atomic(users, layout.silver_path("users"))
    return dg.MaterializeResult(
        metadata={
            "full_rebuild": report.full,
            "days_recomputed": report.days,
            "rows_written": report.rows,
            "dropped_by_permissions": report.dropped,
            "users": users.height,
        }
    )
