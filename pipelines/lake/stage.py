"""Bookkeeping shared by ingest stages: which ledger files are pending, bronze parts, lineage,
and the isolation of one input from the others.

A stage writes its bronze parts for a file first and its processed marker last, so a crash
in between only means the file is processed again (parts are replaced, never duplicated).

Isolation: reading and parsing one input runs under ``input_failure``. Any exception there
(a parser bug, a decoder bug, a bound exceeded, the file withdrawn from landing) refuses that
input alone, with the stage, the path and the exception in the quarantine reason, and the
stage goes on with the next input. Writing the lake is outside that guard: an I/O error on our
own storage (disk full) fails the run, because nothing about the input is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import polars as pl

from pipelines.lake.io import parquet_parts, write_parquet_atomic
from pipelines.lake.layout import LakeLayout
from pipelines.lake.ledger import LandingRefused, current_files
from pipelines.lake.quarantine import QuarantineBatch

# A reason is read by people and stored per input: long exception texts are cut.
MAX_REASON_CHARS = 500

LINEAGE_SCHEMA: dict[str, pl.DataType] = {
    "source_sha256": pl.String(),
    "source_path": pl.String(),
    "received_at": pl.Datetime("us", "UTC"),
}

PROCESSED_SCHEMA: dict[str, pl.DataType] = {
    "sha256": pl.String(),
    "path": pl.String(),
    "status": pl.String(),  # ingested, partial, quarantined
    "rows": pl.Int64(),
    "processed_at": pl.Datetime("us", "UTC"),
}


def processed_hashes(layout: LakeLayout, stage: str) -> set[str]:
    return {p.stem for p in parquet_parts(layout.processed_dir(stage))}


def pending_files(layout: LakeLayout, kind: str, stage: str) -> pl.DataFrame:
    """Ledger files of ``kind`` whose content this stage has not processed yet."""
    done = processed_hashes(layout, stage)
    files = current_files(layout, kind)
    return files.filter(~pl.col("sha256").is_in(list(done)))


def with_lineage(frame: pl.DataFrame, file_row: dict) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(file_row["sha256"], pl.String()).alias("source_sha256"),
        pl.lit(file_row["path"], pl.String()).alias("source_path"),
        pl.lit(file_row["received_at"], pl.Datetime("us", "UTC")).alias("received_at"),
    )


def write_bronze(
    layout: LakeLayout, table: str, sha256: str, frame: pl.DataFrame | pl.LazyFrame | None
) -> None:
    """The input's part of a bronze table; none for no rows (``None`` or an empty frame). A
    LazyFrame is sunk part by part, never held whole."""
    path = layout.bronze_dir(table) / f"{sha256}.parquet"
    if frame is not None and (isinstance(frame, pl.LazyFrame) or frame.height):
        write_parquet_atomic(frame, path)
    else:
        path.unlink(missing_ok=True)


def mark_processed(layout: LakeLayout, stage: str, file_row: dict, status: str, rows: int) -> None:
    marker = pl.DataFrame(
        [
            {
                "sha256": file_row["sha256"],
                "path": file_row["path"],
                "status": status,
                "rows": rows,
                "processed_at": datetime.now(UTC),
            }
        ],
        schema=PROCESSED_SCHEMA,
    )
    write_parquet_atomic(marker, layout.processed_dir(stage) / f"{file_row['sha256']}.parquet")


def failure_reason(exc: BaseException) -> str:
    """The quarantine reason for an exception raised while handling one input."""
    if isinstance(exc, LandingRefused):
        return f"refused: {exc}"
    if isinstance(exc, FileNotFoundError):
        return "withdrawn: the file was removed from landing before it was ingested"
    if isinstance(exc, RecursionError):
        return "unexpected RecursionError: input nested too deeply for the parser"
    text = str(exc).encode("utf-8", "backslashreplace").decode()
    if len(text) > MAX_REASON_CHARS:
        text = text[:MAX_REASON_CHARS] + "…"
    name = type(exc).__name__
    return f"unexpected {name}: {text}" if text else f"unexpected {name}"


def refuse_input(
    layout: LakeLayout, stage: str, file_row: dict, reason: str, tables: Iterable[str]
) -> None:
    """Quarantine a whole input: its reason recorded, no bronze part left of an earlier try,
    and the input marked processed so later runs don't stop on it again (see
    ``wearhouse quarantine retry`` to process it again after a fix)."""
    quarantine = QuarantineBatch(file_row["path"], file_row["sha256"], stage)
    quarantine.add(reason)
    quarantine.write(layout)
    for table in tables:
        write_bronze(layout, table, file_row["sha256"], pl.DataFrame())
    mark_processed(layout, stage, file_row, "quarantined", 0)
