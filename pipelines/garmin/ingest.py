"""Push bodies in the ledger → bronze Parquet parts (one per body and table) + quarantine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipelines.garmin.push import BRONZE_TABLES, PayloadError, is_erased_item, parse_push
from pipelines.lake.erasure import erased_users, refresh_ledger_stat, rewrite_body
from pipelines.lake.layout import LakeLayout
from pipelines.lake.quarantine import QuarantineBatch
from pipelines.lake.stage import mark_processed, pending_files, with_lineage, write_bronze

STAGE = "garmin_push"
# Bodies fetched for pings land in garmin/fetched and are parsed exactly like pushes.
KINDS = ("garmin_push", "garmin_fetched")


@dataclass
class IngestReport:
    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    quarantined_files: int = 0
    quarantined_items: int = 0
    dropped_erased_items: int = 0
    unmodelled_types: set[str] = field(default_factory=set)  # kept in garmin_other_summaries


def ingest_push_files(landing: Path, layout: LakeLayout) -> IngestReport:
    report = IngestReport()
    erased = erased_users(layout)
    for kind in KINDS:
        for file_row in pending_files(layout, kind, STAGE).iter_rows(named=True):
            report.files += 1
            _ingest_one(landing, layout, file_row, report, erased)
    return report


def _ingest_one(
    landing: Path, layout: LakeLayout, file_row: dict, report: IngestReport, erased: dict
) -> None:
    quarantine = QuarantineBatch(file_row["path"], file_row["sha256"], STAGE)
    raw = (landing / file_row["path"]).read_bytes()
    try:
        parsed = parse_push(raw, erased)
    except PayloadError as exc:
        quarantine.add(str(exc))
        quarantine.write(layout)
        for table in BRONZE_TABLES:  # a re-processed body must not leave older parts behind
            write_bronze(layout, table, file_row["sha256"], pl.DataFrame())
        mark_processed(layout, STAGE, file_row, "quarantined", 0)
        report.quarantined_files += 1
        return
    tables = parsed.tables()
    total = 0
    for table, frame in tables.items():
        # Most tables are empty for any one body: nothing to label, just no part.
        labelled = with_lineage(frame, file_row) if frame.height else frame
        write_bronze(layout, table, file_row["sha256"], labelled)
        report.rows[table] = report.rows.get(table, 0) + frame.height
        total += frame.height
    for index, reason in parsed.refusals:
        quarantine.add(reason, index)
    quarantine.write(layout)
    report.quarantined_items += len(parsed.refusals)
    report.unmodelled_types.update(parsed.unknown_types)
    if parsed.dropped_erased:
        # A late delivery for an erased user: their items must not stay in landing either.
        report.dropped_erased_items += parsed.dropped_erased
        rewrite_body(landing / file_row["path"], lambda item: is_erased_item(item, erased))
        refresh_ledger_stat(layout, landing, file_row["path"])
    status = "partial" if parsed.refusals else "ingested"
    mark_processed(layout, STAGE, file_row, status, total)
