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
    athletes_per_batch: int = 100


@dg.asset(
    group_name="silver",
    deps=["bronze_plans", "silver_activities", "user_erasure"],
    description="Planned sessions and steps (repeats unrolled) matched to activities and to "
    "stretches of them: plan_matches and plan_interval_matches.",
)
def silver_plan_matches(lake: WearhouseLake, config: PlanMatchConfig) -> dg.MaterializeResult:
    layout = lake.layout
    planned, steps, problems = build_planned(layout)
    settings = MatchConfig(
        tolerance_days=config.tolerance_days,
        green=(config.green_low, config.green_high),
        yellow=(config.yellow_low, config.yellow_high),
    )
    sessions_all = pl.scan_parquet(layout.silver_path("sessions"))
    samples_all = pl.scan_parquet(layout.silver_path("samples"))
    laps_all = pl.scan_parquet(layout.silver_path("intervals")).filter(pl.col("kind") == "lap")
    # Athletes are independent: match them in batches so memory stays bounded (about 4 GB per
    # 100 athlete-years of full-rate samples, benchmarks/plan_matching_speed.py).
    users = planned.get_column("user_id").unique().sort().to_list()
    results = []
    for start in range(0, len(users), config.athletes_per_batch):
        batch = users[start : start + config.athletes_per_batch]
        sessions = sessions_all.filter(pl.col("user_id").is_in(batch)).collect()
        ids = sessions.get_column("session_id").implode()
        results.append(
            evaluate_plans(
                planned.filter(pl.col("user_id").is_in(batch)),
                steps.join(
                    planned.filter(pl.col("user_id").is_in(batch)).select("planned_session_id"),
                    on="planned_session_id",
                ),
                sessions,
                samples_all.filter(pl.col("session_id").is_in(ids)).collect(),
                laps_all.filter(pl.col("session_id").is_in(ids)).collect(),
                settings,
            )
        )
    if results:
        matches = pl.concat([m for m, _ in results])
        step_rows = pl.concat([r for _, r in results])
    else:
        empty_sessions = sessions_all.head(0).collect()
        matches, step_rows = evaluate_plans(
            planned,
            steps,
            empty_sessions,
            samples_all.head(0).collect(),
            laps_all.head(0).collect(),
            settings,
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
