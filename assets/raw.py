from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from pipelines.garmin.ping import STAGE as PING_STAGE
from pipelines.garmin.ping import PingFile, fetch_pings
from pipelines.lake.io import remove_leftovers
from pipelines.lake.ledger import register_landing
from pipelines.lake.stage import mark_processed, pending_files
from pipelines.resources import WearhouseLake

# Landing's writers (the receiver, the importer) may be at work while a run starts: only their
# leftovers older than this are theirs no more.
LANDING_LEFTOVER_AGE_S = 3600.0


@dg.asset(
    group_name="raw",
    description="Every landing file recorded once, by sha256 (after the temporary files of an "
    "interrupted run are removed).",
)
def raw_ledger(lake: WearhouseLake, duckdb: DuckDBResource) -> dg.MaterializeResult:
    # Runs are serialized (one run lock per lake, or the run queue): what a writer left
    # behind now was left by a run that died.
    warehouse = Path(duckdb.database)
    leftovers = [
        *remove_leftovers(lake.layout.root),
        *remove_leftovers(warehouse.parent, recursive=False, prefix=f".{warehouse.name}."),
        *remove_leftovers(lake.landing_path, LANDING_LEFTOVER_AGE_S),
    ]
    new_rows = register_landing(lake.landing_path, lake.layout)
    kinds = new_rows.group_by("kind").len().sort("kind").iter_rows()
    problems = new_rows.filter(new_rows["problem"].is_not_null()).height
    return dg.MaterializeResult(
        metadata={
            "new_files": new_rows.height,
            "new_files_by_kind": {kind: n for kind, n in kinds},
            "files_with_problems": problems,
            "leftovers_removed": len(leftovers),
        }
    )


@dg.asset(
    group_name="raw",
    deps=["raw_ledger"],
    description="Garmin pings fetched (httpx, Garmin hosts only) into landing: summary bodies "
    "to garmin/fetched/, activity files to fit/<userId>/ with their ping metadata.",
)
def garmin_ping_fetch(lake: WearhouseLake) -> dg.MaterializeResult:
    pending = {
        row["sha256"]: row
        for row in pending_files(lake.layout, "garmin_ping", PING_STAGE).iter_rows(named=True)
    }
    report = fetch_pings(
        lake.landing_path, lake.layout, [PingFile.from_ledger_row(r) for r in pending.values()]
    )
    for outcome in report.files:
        if outcome.complete:  # retryable failures stay pending for the next run
            status = "ingested" if set(outcome.status_counts) <= {"fetched"} else "partial"
            fetched = outcome.status_counts.get("fetched", 0)
            mark_processed(lake.layout, PING_STAGE, pending[outcome.sha256], status, fetched)
    # What just landed goes into the ledger now, so this run's bronze stages ingest it.
    register_landing(lake.landing_path, lake.layout)
    return dg.MaterializeResult(
        metadata={
            "counts": report.counts,
            "landed": len(report.landed),
            "problems": len(report.problems),
            "incomplete_ping_files": sum(not f.complete for f in report.files),
        }
    )
