import dagster as dg

from pipelines.lake.ledger import register_landing
from pipelines.resources import WearhouseLake


@dg.asset(group_name="raw", description="Every landing file recorded once, by sha256.")
def raw_ledger(lake: WearhouseLake) -> dg.MaterializeResult:
    new_rows = register_landing(lake.landing_path, lake.layout)
    kinds = new_rows.group_by("kind").len().sort("kind").iter_rows()
    problems = new_rows.filter(new_rows["problem"].is_not_null()).height
    return dg.MaterializeResult(
        metadata={
            "new_files": new_rows.height,
            "new_files_by_kind": {kind: n for kind, n in kinds},
            "files_with_problems": problems,
        }
    )
