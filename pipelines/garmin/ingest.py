"""Push bodies in the ledger → bronze Parquet parts (one per body and table) + quarantine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipelines.garmin.push import BRONZE_TABLES, PayloadError, is_erased_item, parse_push
from pipelines.lake.erasure import erased_users, refresh_ledger_stat, rewrite_body
from pipelines.lake.layout import LakeLayout
from pipelines.lake.ledger import read_landed
from pipelines.lake.quarantine import QuarantineBatch
from pipelines.lake.stage import (
    failure_reason,
    mark_processed,
    pending_files,
    refuse_input,
    with_lineage,
    write_bronze,
)

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
    try:
        parsed = parse_push(read_landed(landing, file_row), erased)
        counts = parsed.row_counts()
    except PayloadError as exc:
        reason = str(exc)
    except Exception as exc:  # one input's failure, whatever it is, is that input's alone
        reason = failure_reason(exc)
    else:
        reason = None
    if reason is not None:
        # A re-processed body must not leave older parts behind.
        refuse_input(layout, STAGE, file_row, reason, BRONZE_TABLES)
        report.quarantined_files += 1
        return
    # Tables are streamed to Parquet part by part (an exploded time series is about ten times
    # the JSON it comes from): the rows are built while they are written, so a failure of the
    # input's own can still surface here; one of our storage (OSError) fails the run.
    try:
        for table, frame in parsed.lazy_tables().items():
            # Most tables are empty for any one body: nothing to label, just no part.
            labelled = with_lineage(frame, file_row) if counts[table] else None
            write_bronze(layout, table, file_row["sha256"], labelled)
    except OSError:
        raise
    except Exception as exc:
        refuse_input(layout, STAGE, file_row, failure_reason(exc), BRONZE_TABLES)
        report.quarantined_files += 1
        return
    total = sum(counts.values())
    for table, n in counts.items():
        report.rows[table] = report.rows.get(table, 0) + n
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
