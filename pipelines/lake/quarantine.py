"""Quarantine: inputs (or items inside them) that could not be ingested, with the reason.

The raw file stays in landing untouched; the quarantine records point at it by path and sha256.
``release`` lets a stage take a quarantined input again (``wearhouse quarantine retry``, after a
fix of the code): its record and its processed marker go, so the next run processes it anew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from pipelines.lake.io import scan_parts, write_parquet_atomic
from pipelines.lake.layout import LakeLayout

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "input_path": pl.String(),
    "input_sha256": pl.String(),
    "stage": pl.String(),  # which step refused it: ledger, garmin_push, fit, …
    "item_index": pl.Int64(),  # null when the whole file was refused
    "reason": pl.String(),
    "quarantined_at": pl.Datetime("us", "UTC"),
}


@dataclass
class QuarantineBatch:
    """Collects refusals during one stage's pass over one input file."""

    input_path: str
    input_sha256: str
    stage: str
    records: list[dict] = field(default_factory=list)

    def add(self, reason: str, item_index: int | None = None) -> None:
        self.records.append(
            {
                "input_path": self.input_path,
                "input_sha256": self.input_sha256,
                "stage": self.stage,
                "item_index": item_index,
                "reason": reason,
                "quarantined_at": datetime.now(UTC),
            }
        )

    def write(self, layout: LakeLayout) -> Path | None:
        """One part per (stage, input): re-processing the same input replaces, never duplicates."""
        path = layout.quarantine_dir / self.stage / f"{self.input_sha256}.parquet"
        if not self.records:
            path.unlink(missing_ok=True)
            return None
        return write_parquet_atomic(pl.DataFrame(self.records, schema=QUARANTINE_SCHEMA), path)


def read_quarantine(layout: LakeLayout) -> pl.DataFrame:
    return scan_parts(layout.quarantine_dir, QUARANTINE_SCHEMA).collect()


def release(layout: LakeLayout, stage: str, input_sha256: str) -> bool:
    """Forget that ``stage`` refused the input: the next run processes it again. False when
    there was nothing to release."""
    record = layout.quarantine_dir / stage / f"{input_sha256}.parquet"
    marker = layout.processed_dir(stage) / f"{input_sha256}.parquet"
    existed = record.exists()
    # The marker first: a crash in between leaves a record of an input that is pending again,
    # which its next processing rewrites.
    marker.unlink(missing_ok=True)
    record.unlink(missing_ok=True)
    return existed
