"""Gold: the warehouse tables as Delta tables for dashboards, one commit per table and run.

``gold/<table>/`` is a Delta table partitioned by ``month`` and ``day`` of the table's day
column (``month=2026-03/day=2026-03-14/part-<uuid>.parquet``, rows sorted by user inside a
day), so a dashboard reading one month touches one folder and an incremental run replaces only
the days that changed. Data files are written first, then one commit adds them and removes the
files they replace: a Delta reader sees a table before or after a run, never in between. Files
no commit references any more are vacuumed when the run has published everything, so between
runs the folder holds exactly the current rows (also for a reader that globs ``**/*.parquet``).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
from deltalake import DeltaTable, Schema
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, PostCommitHookProperties, create_table_with_add_actions

from pipelines.lake.io import full_disk_named
from pipelines.lake.layout import LakeLayout
from pipelines.warehouse.tables import table as declaration

UNKNOWN = "unknown"  # rows without a date (and undated tables): month=unknown/day=unknown
PARTITIONS = ["month", "day"]
# Gold is exported a few days at a time, at most this many rows (a day larger than that goes
# alone), so a table's rows are never all in memory.
GOLD_EXPORT_ROWS = 1_000_000
# No column statistics in the log: it then holds only paths and days, so an erased user
# leaves nothing in a table's history. Parquet's own statistics still prune row groups.
CONFIGURATION = {"delta.dataSkippingNumIndexedCols": "0"}
# Checkpoints are Parquet files inside _delta_log, which a reader globbing ``**/*.parquet``
# would take for data; the log stays JSON.
HOOKS = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)


def _day_column(table: str) -> str | None:
    """The column whose UTC day partitions the table's gold (sql/tables.yaml)."""
    return declaration(table).gold_day


def _day_expr(table: str) -> str:
    if _day_column(table) is None:
        return f"'{UNKNOWN}'"
    day = f"strftime(CAST(\"{_day_column(table)}\" AS DATE), '%Y-%m-%d')"
    return f"coalesce({day}, '{UNKNOWN}')"


def gold_days(con: duckdb.DuckDBPyConnection, table: str, where: str) -> set[str]:
    """The gold days of the rows matching ``where`` (a fixed predicate, never input)."""
    if _day_column(table) is None:
        return set()
    sql = f'SELECT DISTINCT {_day_expr(table)} FROM "{table}" WHERE {where}'
    return {row[0] for row in con.execute(sql).fetchall()}


def _day_chunks(con: duckdb.DuckDBPyConnection, table: str, days: set[str] | None):
    """The table's days (all, or those of ``days`` that have rows) in order, grouped into runs
    of at most GOLD_EXPORT_ROWS rows."""
    sql = f'SELECT {_day_expr(table)} AS d, count(*) FROM "{table}" GROUP BY d ORDER BY d'
    chunks: list[list[str]] = []
    rows = GOLD_EXPORT_ROWS
    for day, n in con.execute(sql).fetchall():
        if days is not None and day not in days:
            continue
        if rows + n > GOLD_EXPORT_ROWS:
            chunks.append([])
            rows = 0
        chunks[-1].append(day)
        rows += n
    return chunks


def _frame(con: duckdb.DuckDBPyConnection, table: str, days: list[str]) -> pl.DataFrame:
    """Rows of ``days`` with their gold day. Days select by range on the raw column:
    formatting every row's date to compare would scan the whole table slowly."""
    where, params = "", {}
    if _day_column(table) is not None:
        column = f'"{_day_column(table)}"'
        ranges = []
        for n, day in enumerate(days):
            if day == UNKNOWN:
                ranges.append(f"{column} IS NULL")
                continue
            ranges.append(
                f"({column} >= CAST($lo{n} AS TIMESTAMPTZ) AND {column} < CAST($hi{n} AS "
                "TIMESTAMPTZ))"
            )
            start = date.fromisoformat(day)
            params[f"lo{n}"] = f"{start} 00:00:00+00"
            params[f"hi{n}"] = f"{start + timedelta(days=1)} 00:00:00+00"
        where = "WHERE " + (" OR ".join(ranges) or "FALSE")
    sql = f'SELECT *, {_day_expr(table)} AS _gold_day FROM "{table}" {where}'
    frame = _signed(pl.from_arrow(con.sql(sql, params=params).to_arrow_table()))
    sort_by = [c for c in ("user_id", _day_column(table)) if c in frame.columns]
    return frame.sort(sort_by, nulls_last=True) if sort_by else frame


# Delta has no unsigned integers: each widens to the signed type that holds all its values.
_SIGNED = {pl.UInt8: pl.Int16, pl.UInt16: pl.Int32, pl.UInt32: pl.Int64, pl.UInt64: pl.Int64}


def _signed(frame: pl.DataFrame) -> pl.DataFrame:
    casts = {n: _SIGNED[t] for n, t in frame.schema.items() if t in _SIGNED}
    return frame.cast(casts) if casts else frame


def _empty(con: duckdb.DuckDBPyConnection, table: str) -> pl.DataFrame:
    return _signed(pl.from_arrow(con.sql(f'SELECT * FROM "{table}" LIMIT 0').to_arrow_table()))


def _write_files(frame: pl.DataFrame, root: Path) -> list[AddAction]:
    """One Parquet file per day under ``root``, not yet part of the table."""
    return [
        _write_file(part.drop("_gold_day"), day, root)
        for (day,), part in frame.partition_by("_gold_day", as_dict=True).items()
    ]


def _write_file(part: pl.DataFrame, day: str, root: Path) -> AddAction:
    month = day[:7] if day != UNKNOWN else UNKNOWN
    relative = f"month={month}/day={day}/part-{uuid.uuid4().hex}.parquet"
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with full_disk_named(path):
        part.write_parquet(path)
    stat = path.stat()
    return AddAction(
        path=relative,
        size=stat.st_size,
        partition_values={"month": month, "day": day},
        modification_time=int(stat.st_mtime * 1000),
        data_change=True,
        stats=json.dumps({"numRecords": part.height}),
    )


def _schema(empty: pl.DataFrame) -> Schema:
    with_partitions = empty.with_columns(month=pl.lit(None, pl.String), day=pl.lit(None, pl.String))
    return Schema.from_arrow(with_partitions.to_arrow().schema)


def open_gold(layout: LakeLayout, table: str) -> DeltaTable | None:
    try:
        return DeltaTable(str(layout.gold_dir(table)))
    except TableNotFoundError:
        return None


def export_gold(
    con: duckdb.DuckDBPyConnection, layout: LakeLayout, table: str, days: set[str] | None = None
) -> int:
    """Commit the table's rows to gold: all of them (``days`` None), or replace only ``days``
    (days without rows now lose theirs). One commit either way; returns the days written."""
    existing = open_gold(layout, table)
    if existing is None:
        days = None  # a table that is not there yet gets every row
    elif days is not None and not days:
        return 0
    root = layout.gold_dir(table)
    root.mkdir(parents=True, exist_ok=True)
    actions: list[AddAction] = []
    for chunk in _day_chunks(con, table, days):
        actions += _write_files(_frame(con, table, chunk), root)
    if not actions and days is None:
        # An empty table keeps one file with its columns, for readers that glob for data.
        actions = [_write_file(_empty(con, table), UNKNOWN, root)]
    schema = _schema(_empty(con, table))
    if existing is None or days is None:
        # A full export replaces everything, schema included (a model may have changed).
        create_table_with_add_actions(
            str(root),
            schema,
            actions,
            mode="overwrite",
            partition_by=PARTITIONS,
            name=table,
            configuration=CONFIGURATION,
            post_commithook_properties=HOOKS,
        )
    else:
        existing.create_write_transaction(
            actions,
            mode="overwrite",
            schema=schema,
            partition_by=PARTITIONS,
            partition_filters=[("day", "in", sorted(days))],
            post_commithook_properties=HOOKS,
        )
    return len(actions) if days is None else len(days)


def vacuum_gold(layout: LakeLayout, table: str) -> int:
    """Remove every file of the table that its newest version does not reference (files
    replaced by this run, files written by a run that died before its commit)."""
    table_ = open_gold(layout, table)
    if table_ is None:
        return 0
    removed = table_.vacuum(
        retention_hours=0,
        dry_run=False,
        enforce_retention_duration=False,
        full=True,
        post_commithook_properties=HOOKS,
    )
    _remove_empty_folders(layout.gold_dir(table))
    return len(removed)


def _remove_empty_folders(root: Path) -> None:
    for folder, _subfolders, _files in os.walk(root, topdown=False):
        if folder != str(root) and not folder.endswith("_delta_log"):
            with contextlib.suppress(OSError):  # not empty: still holds data
                os.rmdir(folder)


def read_gold(layout: LakeLayout, table: str) -> pl.LazyFrame:
    """The newest committed version of a gold table (month and day as columns)."""
    return pl.scan_delta(str(layout.gold_dir(table)))
