"""Bookkeeping shared by ingest stages: which ledger files are pending, bronze parts, lineage.

A stage writes its bronze parts for a file first and its processed marker last, so a crash
in between only means the file is processed again (parts are replaced, never duplicated).
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from pipelines.lake.io import parquet_parts, write_parquet_atomic
from pipelines.lake.layout import LakeLayout
from pipelines.lake.ledger import current_files

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


def write_bronze(layout: LakeLayout, table: str, sha256: str, frame: pl.DataFrame) -> None:
    path = layout.bronze_dir(table) / f"{sha256}.parquet"
    if frame.height:
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
