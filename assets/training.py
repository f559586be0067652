import os
from datetime import date, timedelta

import dagster as dg

from pipelines.resources import WearhouseLake
from pipelines.settings import Settings
from pipelines.training.config import TrainingConfig
from pipelines.training.service import Parts, push_plans
from pipelines.training.users import purge_users

ENV_PUSH_PLANS = "WEARHOUSE_GARMIN_PUSH_PLANS"


class GarminPushConfig(dg.Config):
    """Off by default: sending to athletes' watches is a decision, not a side effect of a run.
    On with ``enabled: true`` here or WEARHOUSE_GARMIN_PUSH_PLANS=1."""

    enabled: bool = False
    days_ahead: int = 28


@dg.asset(
    group_name="outbound",
    deps=["silver_plan_matches"],
    description="Planned sessions pushed to Garmin as structured workouts scheduled on their "
    "dates (Training API V2; idempotent: only changes are sent). Off unless enabled.",
)
def garmin_workouts_sync(lake: WearhouseLake, config: GarminPushConfig) -> dg.MaterializeResult:
    # Erased users' outbound rows go whether or not pushing is on.
    purged = purge_users(lake.layout)
    if not (config.enabled or os.environ.get(ENV_PUSH_PLANS) == "1"):
        return dg.MaterializeResult(
            metadata={
                "enabled": False,
                "note": f"off: set {ENV_PUSH_PLANS}=1 or this asset's config enabled: true",
                "purged_rows": purged,
            }
        )
    settings = Settings.resolve(landing=lake.landing, lake=lake.lake)
    parts = Parts(settings, TrainingConfig.resolve(settings.home))
    report = push_plans(parts, end=date.today() + timedelta(days=config.days_ahead))
    return dg.MaterializeResult(
        metadata={
            "enabled": True,
            "created": len(report.created),
            "updated": len(report.updated),
            "recreated": len(report.recreated),
            "deleted": len(report.deleted),
            "refused": len(report.refused),
            "failed": len(report.failed),
            "unchanged": report.unchanged,
            "api_calls": report.calls,
            "problems": [f"{sid}: {why}" for sid, why in (report.refused + report.failed)][:50],
            "purged_rows": purged,
        }
    )
