"""Day-partitioned silver tables, the index of bronze parts by day, and the change log.

Silver tables that grow with time are stored one Parquet file per UTC day
(``silver/<table>/<YYYY-MM-DD>.parquet``; rows without a date in ``0001-01-01.parquet``), so
a run recomputes only the days its new inputs touch. Which bronze parts hold data of which day
is kept in ``silver/_index/<stage>.parquet``; what a run changed is appended to
``silver/_changes/<stage>.json`` until the warehouse has applied it (so a crash between the two
only means the warehouse applies it on the next run; applying twice is harmless).

Beside each index, ``<stage>.code`` holds the fingerprint of the code that built the stage's
silver (``silver_code_fingerprint``): after an upgrade that changes how silver is computed (a
decoder fix, a new rule for laps) the index no longer describes the silver on disk, and the
next run rebuilds the stage in full, as the warehouse does when its SQL changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from pipelines.lake.io import (
    full_disk_named,
    parquet_parts,
    write_parquet_atomic,
    write_text_atomic,
)
from pipelines.lake.layout import LakeLayout

# Rows whose partition instant is unknown share one partition under this date.
UNDATED = date(1, 1, 1)
DAY = "_day"
# One row per bronze part, day and key: the key names what the part holds a version of (an
# activity, a summary), so every version of it is read together wherever its days lie.
INDEX_SCHEMA: dict[str, pl.DataType] = {
    "source_sha256": pl.String(),
    "day": pl.Date(),
    "key": pl.String(),
}
EMPTY_FILE = "_empty.parquet"  # carries the schema while a table has no partitions


def partition_day(instant: pl.Expr) -> pl.Expr:
    """UTC calendar day of a UTC instant; UNDATED when null."""
    return instant.dt.date().fill_null(pl.lit(UNDATED, pl.Date))


def expand_days(days: Iterable[date], by: int = 1) -> set[date]:
    """Each day with its ``by`` neighbours on both sides (UNDATED stays alone)."""
    out: set[date] = set()
    for day in days:
        if day == UNDATED:
            out.add(day)
            continue
        out.update(day + timedelta(days=k) for k in range(-by, by + 1))
    return out


# --- partitioned silver tables ------------------------------------------------------------


def partition_file(layout: LakeLayout, table: str, day: date) -> Path:
    return layout.silver_dir(table) / f"{day.isoformat()}.parquet"


def partition_files(
    layout: LakeLayout, table: str, days: Iterable[date] | None = None
) -> list[Path]:
    """Existing partition files of ``table`` (of ``days`` only, when given)."""
    if days is None:
        return [p for p in parquet_parts(layout.silver_dir(table)) if not p.name.startswith("_")]
    files = (partition_file(layout, table, day) for day in sorted(days))
    return [p for p in files if p.exists()]


def partition_days(layout: LakeLayout, table: str) -> set[date]:
    return {date.fromisoformat(p.stem) for p in partition_files(layout, table)}


def sql_sources(layout: LakeLayout, table: str, days: Iterable[date] | None = None) -> list[str]:
    """Files for DuckDB's read_parquet: the partitions, else the empty schema file."""
    files = partition_files(layout, table, days)
    if not files:
        files = [layout.silver_dir(table) / EMPTY_FILE]
    return [str(p) for p in files]


def scan_silver(
    layout: LakeLayout,
    table: str,
    days: Iterable[date] | None = None,
    schema: dict[str, pl.DataType] | None = None,
) -> pl.LazyFrame:
    """A partitioned silver table (only ``days``, when given). Before its first write it is
    empty with ``schema``."""
    files = partition_files(layout, table, days)
    if not files:
        empty = layout.silver_dir(table) / EMPTY_FILE
        if not empty.exists():
            return pl.LazyFrame(schema=schema or {})
        files = [empty]
    return pl.scan_parquet(files)


def replace_partitions(
    layout: LakeLayout, table: str, frame: pl.DataFrame, days: Iterable[date]
) -> None:
    """Make the partitions of ``days`` hold exactly the rows of ``frame`` (which carries the
    partition column ``_day``, dropped on write). Each file is replaced atomically."""
    write_parquet_atomic(frame.head(0).drop(DAY), layout.silver_dir(table) / EMPTY_FILE)
    by_day = {key[0]: part.drop(DAY) for key, part in frame.partition_by(DAY, as_dict=True).items()}
    for day in sorted(set(days) | set(by_day)):
        path = partition_file(layout, table, day)
        part = by_day.get(day)
        if part is None or part.is_empty():
            path.unlink(missing_ok=True)
        else:
            write_parquet_atomic(part, path)


def write_schema(layout: LakeLayout, table: str, schema: pl.Schema) -> None:
    """The table's empty schema file (``_day`` is not stored), as ``replace_partitions``
    writes it."""
    empty = pl.DataFrame(schema=schema)
    write_parquet_atomic(empty.drop(DAY, strict=False), layout.silver_dir(table) / EMPTY_FILE)


def replace_partition(layout: LakeLayout, table: str, day: date, frame: pl.LazyFrame) -> int:
    """Make the partition of ``day`` hold exactly the rows of ``frame`` (without ``_day``),
    streamed into the file rather than collected; no rows remove it. Returns the row count.
    The file is replaced atomically."""
    path = partition_file(layout, table, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with full_disk_named(tmp):
            frame.sink_parquet(tmp)
        # The footer holds the row count: nothing is read back.
        rows = pl.scan_parquet(tmp).select(pl.len()).collect().item()
        if rows:
            os.replace(tmp, path)
        else:
            path.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)
    return rows


# --- index of bronze parts by day ---------------------------------------------------------


def index_path(layout: LakeLayout, stage: str) -> Path:
    return layout.silver_state_dir("_index") / f"{stage}.parquet"


# Packages whose code does not shape silver rows (top-level modules are Dagster wiring).
_NOT_SILVER = ("report", "sample_data", "warehouse")


@functools.cache
def silver_code_fingerprint() -> str:
    """sha256 over the source of every module that computes silver (pipelines' subpackages
    but the report, the sample data and the warehouse, whose SQL has its own fingerprint)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if len(relative.parts) == 1 or relative.parts[0] in _NOT_SILVER:
            continue
        digest.update(f"{relative.as_posix()}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def read_index(layout: LakeLayout, stage: str) -> pl.DataFrame | None:
    """The stage's index; None (a full rebuild) when missing, of an older layout, or written
    by other silver code (``silver_code_fingerprint``)."""
    path = index_path(layout, stage)
    code = path.with_suffix(".code")
    if not path.exists() or not code.exists():
        return None
    if code.read_text().strip() != silver_code_fingerprint():
        return None
    index = pl.read_parquet(path)
    return index if set(INDEX_SCHEMA) <= set(index.columns) else None


def bronze_part_hashes(layout: LakeLayout, tables: Iterable[str]) -> set[str]:
    """sha256 of every committed bronze part of these tables (parts are named by it)."""
    return {p.stem for table in tables for p in parquet_parts(layout.bronze_dir(table))}


@dataclass
class RefreshPlan:
    """What one stage recomputes this run (``parts_for`` says which bronze parts a set of days
    needs)."""

    full: bool
    days: set[date]  # partitions to rewrite
    index: pl.DataFrame  # the index after this run (written once the stage is done)


def plan_refresh(
    layout: LakeLayout,
    stage: str,
    tables: Iterable[str],
    new_part_days,
    force_full: bool = False,
    rebuild_on: Iterable[str] = (),
    margin: int = 1,
) -> RefreshPlan:
    """Decide which days to recompute from the bronze parts not yet in the stage's index.

    ``new_part_days(hashes) -> DataFrame[source_sha256, day, key]`` dates new parts. The days
    of older parts holding the same keys are recomputed too (a re-delivery may move a session
    or summary to another day). A part that disappeared (erasure rewrote or removed it), a new
    part of a ``rebuild_on`` table (e.g. a permission change) or a missing index means a full
    rebuild."""
    present = bronze_part_hashes(layout, tables)
    index = read_index(layout, stage)
    if index is not None and not force_full:
        known = set(index.get_column("source_sha256").to_list())
        new = present - known
        if known <= present and not new & bronze_part_hashes(layout, rebuild_on):
            if not new:
                return RefreshPlan(False, set(), index)
            dated = _dated(new_part_days(new), new)
            index = pl.concat([index, dated])
            touched = set(dated.get_column("day").to_list())
            touched |= set(_same_keys(index, dated).get_column("day").to_list())
            return RefreshPlan(False, expand_days(touched, margin), index)
    dated = _dated(new_part_days(present), present) if present else _empty_index()
    return RefreshPlan(True, set(dated.get_column("day").to_list()), dated)


def _empty_index() -> pl.DataFrame:
    return pl.DataFrame(schema=INDEX_SCHEMA)


def _dated(frame: pl.DataFrame, hashes: set[str]) -> pl.DataFrame:
    """Every part gets at least one row (UNDATED when nothing in it carries a date)."""
    frame = frame.select([pl.col(c).cast(t) for c, t in INDEX_SCHEMA.items()])
    missing = sorted(hashes - set(frame.get_column("source_sha256").to_list()))
    extra = pl.DataFrame(
        {"source_sha256": missing, "day": [UNDATED] * len(missing), "key": [None] * len(missing)},
        schema=INDEX_SCHEMA,
    )
    return pl.concat([frame, extra]).unique().sort("day", "source_sha256", "key")


def _same_keys(index: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """Index rows sharing a (non-null) key with ``rows``."""
    keys = rows.select("key").drop_nulls().unique()
    return index.join(keys, on="key", how="semi")


def write_index(layout: LakeLayout, stage: str, index: pl.DataFrame) -> None:
    """The index, then the fingerprint of the code that built the silver it describes (a crash
    in between leaves no fingerprint: the next run rebuilds in full)."""
    path = index_path(layout, stage)
    path.with_suffix(".code").unlink(missing_ok=True)
    write_parquet_atomic(index, path)
    write_text_atomic(silver_code_fingerprint(), path.with_suffix(".code"))


def rebuild_chunks(
    layout: LakeLayout,
    plan: RefreshPlan,
    tables: Iterable[str],
    also_days: Iterable[date],
    chunk_days: int,
) -> tuple[set[date], list[set[date]]]:
    """The days to rewrite and the chunks to rewrite them in. A full rebuild also clears the
    partitions no input dates any more (after an erasure) and writes every table's schema
    even when there is no data."""
    days = plan.days | set(also_days)
    if not plan.full:
        return days, [days] if days else []
    days |= set().union(*(partition_days(layout, t) for t in tables))
    return days, day_chunks(days, chunk_days) or [set()]


def parts_for(plan: RefreshPlan, days: Iterable[date]) -> set[str]:
    """The bronze parts a recomputation of these days needs: those holding data of the days
    ± 1, and every part holding another version of the same keys (wherever it is dated)."""
    index = plan.index
    rows = index.filter(pl.col("day").is_in(list(expand_days(days))))
    while True:  # until no new key comes in (usually one round)
        more = _same_keys(index, rows)
        grown = pl.concat([rows, more]).unique()
        if grown.height == rows.height:
            return set(rows.get_column("source_sha256"))
        rows = grown


def day_chunks(days: Iterable[date], size: int) -> list[set[date]]:
    """Sorted days in chunks of ``size`` (a full rebuild runs chunk by chunk: bounded memory)."""
    ordered = sorted(days)
    return [set(ordered[i : i + size]) for i in range(0, len(ordered), size)]


# --- change log -------------------------------------------------------------------------------


@dataclass
class Changes:
    """What a stage rewrote, for the warehouse to apply: ``full`` or the listed keys."""

    full: bool = False
    keys: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, values: Iterable[object]) -> None:
        self.keys.setdefault(kind, set()).update(str(v) for v in values)

    def merge(self, other: Changes) -> Changes:
        merged = Changes(self.full or other.full, {k: set(v) for k, v in self.keys.items()})
        for kind, values in other.keys.items():
            merged.add(kind, values)
        return merged

    def get(self, kind: str) -> set[str]:
        return self.keys.get(kind, set())

    def to_json(self) -> str:
        return json.dumps({"full": self.full, "keys": {k: sorted(v) for k, v in self.keys.items()}})

    @classmethod
    def from_json(cls, text: str) -> Changes:
        data = json.loads(text)
        return cls(bool(data["full"]), {k: set(v) for k, v in data["keys"].items()})


def changes_path(layout: LakeLayout, stage: str) -> Path:
    return layout.silver_state_dir("_changes") / f"{stage}.json"


def read_changes(layout: LakeLayout, stage: str) -> Changes:
    path = changes_path(layout, stage)
    return Changes.from_json(path.read_text()) if path.exists() else Changes()


def record_changes(layout: LakeLayout, stage: str, changes: Changes) -> None:
    """Add to the stage's pending changes (atomically: written beside, then renamed)."""
    merged = read_changes(layout, stage).merge(changes)
    write_text_atomic(merged.to_json(), changes_path(layout, stage))


def clear_changes(layout: LakeLayout, stage: str, applied: Changes) -> None:
    """Forget pending changes once applied (only if nothing was added meanwhile)."""
    path = changes_path(layout, stage)
    if path.exists() and read_changes(layout, stage).to_json() == applied.to_json():
        path.unlink()
