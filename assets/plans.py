import dagster as dg

from pipelines.plans.ingest import ingest_plan_files
from pipelines.plans.matching import MatchConfig
from pipelines.plans.refresh import refresh_plan_matches
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
    athletes_per_batch: int = 100


@dg.asset(
    group_name="silver",
    deps=["bronze_plans", "silver_activities", "user_erasure"],
    description="Planned sessions and steps (repeats unrolled) matched to activities and to "
    "stretches of them: plan_matches and plan_interval_matches.",
)
def silver_plan_matches(lake: WearhouseLake, config: PlanMatchConfig) -> dg.MaterializeResult:
    settings = MatchConfig(
        tolerance_days=config.tolerance_days,
        green=(config.green_low, config.green_high),
        yellow=(config.yellow_low, config.yellow_high),
    )
    report = refresh_plan_matches(lake.layout, settings, config.athletes_per_batch)
    statuses = (
        {} if report.matches is None else dict(report.matches.group_by("status").len().iter_rows())
    )
    return dg.MaterializeResult(
        metadata={
            "full_rebuild": report.full,
            "planned_sessions": report.planned_sessions,
            "planned_days_rematched": report.days,
            "statuses_rematched": statuses,
            "unresolved_schedules": report.problems,
        }
    )
