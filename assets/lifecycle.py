import dagster as dg

from pipelines.lake.erasure import erase_deregistered
from pipelines.resources import WearhouseLake
from pipelines.training.users import purge_users


@dg.asset(
    group_name="bronze",
    deps=["bronze_garmin", "bronze_fit"],
    description="Deregistered users erased from landing, ledger, bronze, quarantine and the "
    "outbound Garmin state (one hashed audit row each); derived layers are rebuilt from what "
    "is left.",
)
def user_erasure(lake: WearhouseLake) -> dg.MaterializeResult:
    report = erase_deregistered(lake.landing_path, lake.layout)
    outbound = purge_users(lake.layout)
    return dg.MaterializeResult(
        metadata={"users_erased": report.users, "erased": report.erased, "outbound": outbound}
    )
