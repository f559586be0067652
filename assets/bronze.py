import dagster as dg

from pipelines.fit.ingest import ingest_fit_files
from pipelines.garmin.ingest import ingest_push_files
from pipelines.resources import WearhouseLake


@dg.asset(
    group_name="bronze",
    deps=["garmin_ping_fetch"],
    description="Garmin push bodies (and fetched ping bodies) parsed into bronze tables.",
)
def bronze_garmin(lake: WearhouseLake) -> dg.MaterializeResult:
    report = ingest_push_files(lake.landing_path, lake.layout)
    return dg.MaterializeResult(
        metadata={
            "files": report.files,
            "rows": report.rows,
            "quarantined_files": report.quarantined_files,
            "quarantined_items": report.quarantined_items,
            "unknown_summary_types": sorted(report.unmodelled_types),
        }
    )


@dg.asset(
    group_name="bronze",
    deps=["garmin_ping_fetch"],
    description="FIT files decoded into bronze tables (files, sessions, laps, records, events).",
)
def bronze_fit(lake: WearhouseLake) -> dg.MaterializeResult:
    report = ingest_fit_files(lake.landing_path, lake.layout)
    return dg.MaterializeResult(
        metadata={
            "files": report.files,
            "rows": report.rows,
            "quarantined_files": report.quarantined_files,
            "damaged_files_recovered": report.damaged_files,
            "decoded_by": report.decoders,
        }
    )
