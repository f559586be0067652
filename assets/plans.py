import dagster as dg
import polars as pl

from pipelines.lake.io import write_parquet_atomic
from pipelines.plans.ingest import build_planned, ingest_plan_files
from pipelines.plans.matching import MatchConfig, evaluate_plans
from pipelines.resources import WearhouseLake


@dg.asset(
    group_name="bronze",
    deps=["raw_ledger"],
    description="Training plans (native YAML/JSON, Garmin Training API workouts and "
    "schedules) parsed into bronze tables; invalid plans quarantined.",
)
def bronze_plans(lake: WearhouseLake) -> dg.MaterializeResult:
    report = ingest_plan_files(lake.landing_path, lake.layout)
    return dg.MaterializeResult(
        metadata={
            "files": report.files,
            "rows": report.rows,
            "quarantined_files": report.quarantined_files,
        }
    )


class PlanMatchConfig(dg.Config):
    """Matching settings (see pipelines/plans/matching.py and docs/plans.md)."""

    tolerance_days: int = 0
    green_low: float = 80.0
    green_high: float = 120.0
    yellow_low: float = 50.0
    yellow_high: float = 150.0


@dg.asset(
    group_name="silver",
    deps=["bronze_plans", "silver_activities", "user_erasure"],
    description="Planned sessions and steps (repeats unrolled) matched to activities and to "
    "stretches of them: plan_matches and plan_interval_matches.",
)
def silver_plan_matches(lake: WearhouseLake, config: PlanMatchConfig) -> dg.MaterializeResult:
    layout = lake.layout
    planned, steps, problems = build_planned(layout)
    sessions = pl.read_parquet(layout.silver_path("sessions"))
    samples = pl.read_parquet(layout.silver_path("samples"))
    laps = pl.read_parquet(layout.silver_path("intervals")).filter(pl.col("kind") == "lap")
    matches, step_rows = evaluate_plans(
        planned,
        steps,
        sessions,
        samples,
        laps,
        MatchConfig(
            tolerance_days=config.tolerance_days,
            green=(config.green_low, config.green_high),
            yellow=(config.yellow_low, config.yellow_high),
        ),
    )
    for name, frame in (
        ("planned_sessions", planned),
        ("planned_steps", steps),
        ("plan_matches", matches),
        ("plan_interval_matches", step_rows),
    ):
        write_parquet_atomic(frame, layout.silver_path(name))
    statuses = matches.group_by("status").len().iter_rows()
    return dg.MaterializeResult(
        metadata={
            "planned_sessions": planned.height,
            "statuses": {status: n for status, n in statuses},
            "unresolved_schedules": problems,
        }
    )
