import dagster as dg

from pipelines.activities.build import build_silver_activities
from pipelines.lake.io import write_parquet_atomic
from pipelines.lake.quarantine import read_quarantine
from pipelines.resources import WearhouseLake


@dg.asset(
    group_name="silver",
    deps=["bronze_garmin", "bronze_fit"],
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
    deps=["bronze_garmin", "bronze_fit"],
    description="All quarantine records of every stage in one table.",
)
def silver_quarantine(lake: WearhouseLake) -> dg.MaterializeResult:
    frame = read_quarantine(lake.layout)
    write_parquet_atomic(frame, lake.layout.silver_path("quarantine"))
    return dg.MaterializeResult(metadata={"records": frame.height})
