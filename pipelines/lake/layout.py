"""Where each layer of the lake lives, so no other module builds lake paths by hand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LakeLayout:
    root: Path

    @property
    def ledger_dir(self) -> Path:
        """Raw ledger: one row per landing file (path, sha256, when received/registered)."""
        return self.root / "raw" / "ledger"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    def bronze_dir(self, table: str) -> Path:
        """Bronze tables hold one Parquet part per input file (named by its sha256)."""
        return self.root / "bronze" / table

    def processed_dir(self, stage: str) -> Path:
        """Markers of which input files a stage has consumed (one part per sha256)."""
        return self.root / "bronze" / "_processed" / stage

    def silver_path(self, table: str) -> Path:
        """Small silver tables: one file, rewritten whole."""
        return self.root / "silver" / f"{table}.parquet"

    def silver_state_dir(self, kind: str) -> Path:
        """Bookkeeping of the incremental silver stages: ``_index`` (which bronze parts hold
        which days and keys) and ``_changes`` (what the warehouse has still to apply)."""
        return self.root / "silver" / kind

    def silver_dir(self, table: str) -> Path:
        """Silver tables that grow with time: one file per UTC day (pipelines.lake.partitions)."""
        return self.root / "silver" / table

    def gold_dir(self, table: str) -> Path:
        return self.root / "gold" / table

    @property
    def outbound_dir(self) -> Path:
        """What wearhouse sent to other services (Garmin workouts, backfill requests): a
        record of the outside world that landing cannot rebuild, kept apart from the derived
        layers."""
        return self.root / "outbound"
