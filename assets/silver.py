import dagster as dg
import polars as pl

from pipelines.activities.build import FIT_TABLES, bronze, build_silver_activities
from pipelines.garmin.lifecycle import permission_changes, users_table
from pipelines.garmin.push import BRONZE_TABLES
from pipelines.garmin.wellness import build_silver_wellness
from pipelines.lake.erasure import read_audit
from pipelines.lake.io import write_parquet_atomic
from pipelines.lake.quarantine import read_quarantine
from pipelines.resources import WearhouseLake


@dg.asset(
    group_name="silver",
    deps=["user_erasure"],
    description="Sessions, samples and intervals of every source in one model; intervals "
    "measured at their exact boundaries.",
)
def silver_activities(lake: WearhouseLake) -> dg.MaterializeResult:
    layout = lake.layout
    silver = build_silver_activities(layout)
    for name, frame in (
        ("sessions", silver.sessions),
        ("samples", silver.samples),
        ("interval_bounds", silver.bounds),
        ("intervals", silver.intervals),
    ):
        write_parquet_atomic(frame, layout.silver_path(name))
    return dg.MaterializeResult(
        metadata={
            "sessions": silver.sessions.height,
            "samples": silver.samples.height,
            "intervals": silver.intervals.height,
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
    changes = permission_changes(bronze(layout, "garmin_permission_changes"))
    tables, dropped = build_silver_wellness(lambda table: bronze(layout, table), changes)
    for table, frame in tables.items():
        write_parquet_atomic(frame, layout.silver_path(table))
    seen = pl.concat(
        [
            bronze(layout, table).select("user_id", "received_at")
            for table in (*BRONZE_TABLES, *FIT_TABLES)
            if table != "garmin_deregistrations"
        ]
    )
    users = users_table(seen, changes, read_audit(layout).lazy()).collect()
    write_parquet_atomic(users, layout.silver_path("users"))
    return dg.MaterializeResult(
        metadata={
            "rows": {table: frame.height for table, frame in tables.items()},
            "dropped_by_permissions": dropped,
            "users": users.height,
        }
    )
