"""Build the DuckDB warehouse from silver with the SQL models, publish it, export gold.

Each ``sql/<table>.sql`` file is one SELECT that builds one table from silver Parquet files
whose paths are bound as named parameters (``$sessions`` …), never formatted into the SQL
text. Two ways to apply them, both into a new file beside the published one:

* **full** (first run, an erasure, a permission change, changed models): every model into a
  fresh DuckDB file, then every gold table replaced;
* **incremental** (every other run): a copy of the published file, from which the rows of the
  keys the silver stages changed (their change logs, ``pipelines.lake.partitions``) are
  deleted and the models' rows from the changed silver partitions inserted; then only the gold
  days whose rows changed are replaced.

The new file is then published by one rename over ``warehouse.duckdb``: analysts' read-only
connections never block a run and a run never blocks them (a connection keeps reading the
snapshot it opened until it reconnects; the old file's space is freed when the last one
closes). Change logs are cleared only after gold has committed and the warehouse is published,
so a run that dies anywhere leaves the previous warehouse published and its changes pending,
and applying them again gives the same tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from pipelines.lake.layout import LakeLayout
from pipelines.lake.partitions import Changes, clear_changes, read_changes, sql_sources
from pipelines.warehouse.gold import export_gold, gold_days, vacuum_gold
from pipelines.warehouse.sql import model_query, sql_dir
from pipelines.warehouse.tables import (
    STAGES,
    comment_statements,
    declarations_path,
    table_names,
)
from pipelines.warehouse.tables import table as declaration

# Build order (a model may read tables built before it), as declared in sql/tables.yaml.
MODELS = table_names()

# Analyst views, run after the models (with the declared descriptions as COMMENTs).
EXTRAS = ("views",)

# Silver inputs: day-partitioned (by stage), or single files rewritten whole.
PARTITIONED_INPUTS = {
    "sessions": "activities",
    "samples": "activities",
    "intervals": "activities",
    "garmin_dailies": "wellness",
    "garmin_sleeps": "wellness",
    "garmin_epochs": "wellness",
    "garmin_timeseries": "wellness",
    "plan_matches": "plans",
    "plan_interval_matches": "plans",
}
FILE_INPUTS = ("quarantine", "users", "planned_sessions", "planned_steps")

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def silver_parameters(
    layout: LakeLayout, changed_days: dict[str, set[date]] | None = None
) -> dict[str, list[str]]:
    """Parameter → silver files: all of them, or (incremental) only the changed days."""
    params = {name: [str(layout.silver_path(name))] for name in FILE_INPUTS}
    for name, stage in PARTITIONED_INPUTS.items():
        days = None if changed_days is None else changed_days.get(stage, set())
        params[name] = sql_sources(layout, name, days)
    # What was sent to Garmin: outbound state, not silver (landing cannot rebuild it).
    params["garmin_workouts"] = [str(layout.outbound_dir / "garmin_workouts.parquet")]
    return params


def _bound(query: str, params: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: params[name] for name in set(_PARAM.findall(query))}


# DuckDB's own memory for a build or an update; beyond it, joins, sorts and aggregates spill
# to a temporary folder beside the warehouse (its default is most of the machine's memory).
DUCKDB_MEMORY_LIMIT = "2GB"


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    # Dates of UTC instants (partitions, gold days) must not depend on the machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
    # Named like every temporary file of an interrupted writer: the next run removes it.
    spill = path.with_name(f".{path.name.lstrip('.')}.{uuid.uuid4().hex}.tmp")
    con.execute("SET temp_directory = ?", [str(spill)])
    return con


def build_warehouse(
    con: duckdb.DuckDBPyConnection, layout: LakeLayout, models: tuple[str, ...] = MODELS
) -> dict[str, int]:
    """Build the tables from all of silver into ``con`` (a new file); return their rows."""
    params = silver_parameters(layout)
    for model in models:
        query = model_query(model)
        # Identifiers come from MODELS, never from input; values are bound.
        con.execute(f'CREATE OR REPLACE TABLE "{model}" AS {query}', _bound(query, params))
    _extras(con)
    return {model: table_rows(con, model) for model in models}


def _extras(con: duckdb.DuckDBPyConnection) -> None:
    # Views and descriptions take no parameters; they need every table above.
    for extra in EXTRAS:
        con.execute((sql_dir() / f"{extra}.sql").read_text())
    for statement in comment_statements():
        con.execute(statement)
    con.execute("CREATE SCHEMA IF NOT EXISTS wearhouse_meta")
    con.execute(
        "CREATE OR REPLACE TABLE wearhouse_meta.build AS "
        "SELECT CAST($models AS VARCHAR) AS models_sha256, now() AS built_at",
        {"models": models_fingerprint()},
    )


def models_fingerprint() -> str:
    """sha256 of every model's SQL and the declarations: rows of tables built by other SQL must
    not be mixed with rows inserted by this one, so a change means a full build."""
    digest = hashlib.sha256(declarations_path().read_bytes())
    for name in (*MODELS, *EXTRAS):
        digest.update(name.encode() + b"\0" + (sql_dir() / f"{name}.sql").read_bytes() + b"\0")
    return digest.hexdigest()


def built_with_current_models(target: Path) -> bool:
    try:
        with duckdb.connect(str(target), read_only=True) as con:
            rows = con.execute("SELECT models_sha256 FROM wearhouse_meta.build").fetchall()
    except duckdb.Error:
        return False
    return bool(rows) and rows[0][0] == models_fingerprint()


@dataclass
class WarehouseRefresh:
    full: bool
    rows: dict[str, int]
    gold_days_rewritten: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per model (incremental runs)


def refresh_warehouse(target: Path, layout: LakeLayout) -> WarehouseRefresh:
    """Apply the silver stages' pending changes: incrementally, or a full build when one
    asks for it (or there is no current warehouse), then publish and export gold."""
    pending = {stage: read_changes(layout, stage) for stage in STAGES}
    full = (
        not target.exists()
        # A write-ahead log beside the published file holds commits the copy would miss.
        or Path(f"{target}.wal").exists()
        or not built_with_current_models(target)
        or any(c.full for c in pending.values())
    )
    with _new_snapshot(target, copy=not full) as building:
        with _connect(building) as con:
            if full:
                result = WarehouseRefresh(True, build_warehouse(con, layout))
                for model in MODELS:
                    export_gold(con, layout, model)
            else:
                result = _apply_changes(con, layout, pending)
            # Everything into the file now: a checkpoint that fails (disk full) must fail
            # the run, not leave the rows in a log that is discarded with the snapshot.
            con.execute("CHECKPOINT")
        _publish(building, target, result.rows)
    for stage, changes in pending.items():
        clear_changes(layout, stage, changes)
    for model in MODELS:
        vacuum_gold(layout, model)
    return result


@contextmanager
def _new_snapshot(target: Path, copy: bool) -> Iterator[Path]:
    """A new warehouse file beside ``target`` (empty, or a copy of it), removed with its
    write-ahead log unless it was published."""
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f".{target.name}.{uuid.uuid4().hex}.building")
    try:
        if copy:
            _copy_file(target, building)
        yield building
    finally:
        building.unlink(missing_ok=True)
        Path(f"{building}.wal").unlink(missing_ok=True)


def _copy_file(source: Path, destination: Path) -> None:
    # In the kernel, and as a shared-extent clone where the filesystem can (XFS, btrfs).
    with source.open("rb") as src, destination.open("xb") as dst:
        remaining = os.fstat(src.fileno()).st_size
        while remaining > 0:
            copied = os.copy_file_range(src.fileno(), dst.fileno(), remaining)
            if copied == 0:
                break
            remaining -= copied


def _publish(building: Path, target: Path, rows: dict[str, int]) -> None:
    """Check the new file holds every table, make it durable, and rename it over ``target``."""
    wal = Path(f"{building}.wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise OSError(f"warehouse snapshot {building.name}: checkpoint left a write-ahead log")
    with duckdb.connect(str(building), read_only=True) as con:
        found = {model: table_rows(con, model) for model in MODELS}
    if found != rows:
        raise RuntimeError(f"warehouse snapshot {building.name} does not hold what was built")
    with building.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(building, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _apply_changes(
    con: duckdb.DuckDBPyConnection, layout: LakeLayout, pending: dict[str, Changes]
) -> WarehouseRefresh:
    days = {
        stage: {date.fromisoformat(d) for d in changes.get("day")}
        for stage, changes in pending.items()
    }
    params = silver_parameters(layout, days)
    changed_days: dict[str, set[str]] = {}
    seconds: dict[str, float] = {}
    for kind, stage in (("session", "activities"), ("planned", "plans")):
        keys = sorted(pending[stage].get(kind))
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _changed_{kind} AS "
            "SELECT CAST(unnest($keys) AS VARCHAR) AS key",
            {"keys": keys},
        )
    summaries = [json.loads(k) for k in sorted(pending["wellness"].get("summary"))]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _changed_summary AS SELECT "
        "CAST(unnest($u) AS VARCHAR) AS user_id, CAST(unnest($t) AS VARCHAR) AS "
        "summary_type, CAST(unnest($i) AS VARCHAR) AS summary_id",
        {
            "u": [k[0] for k in summaries],
            "t": [k[1] for k in summaries],
            "i": [k[2] for k in summaries],
        },
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _changed_day AS SELECT CAST(unnest($days) AS DATE) AS day",
        {"days": [d.isoformat() for d in sorted(days["wellness"])]},
    )
    planned_changed = pending["plans"].get("planned_changed")
    models = [m for m in MODELS if planned_changed or not declaration(m).with_plans]
    for model in models:
        started = time.perf_counter()
        refresh = declaration(model).refresh
        stale = refresh.stale if refresh else "true"
        # Gold days of the rows replaced, before and after: a session moved to another day
        # leaves its old day as well.
        changed_days[model] = gold_days(con, model, stale) if refresh else set()
        con.execute(f'DELETE FROM "{model}" WHERE {stale}')
        query = model_query(model)
        con.execute(f'INSERT INTO "{model}" BY NAME SELECT * FROM ({query})', _bound(query, params))
        if refresh:
            changed_days[model] |= gold_days(con, model, stale)
        seconds[model] = time.perf_counter() - started
    rows = {model: table_rows(con, model) for model in MODELS}
    rewritten = 0
    for model in models:
        started = time.perf_counter()
        if declaration(model).refresh and declaration(model).gold_day:
            rewritten += export_gold(con, layout, model, changed_days[model])
        else:
            export_gold(con, layout, model)
        seconds[f"gold:{model}"] = time.perf_counter() - started
    return WarehouseRefresh(False, rows, rewritten, {k: round(v, 3) for k, v in seconds.items()})


def table_rows(con: duckdb.DuckDBPyConnection, name: str) -> int:
    # Identifiers come from the declarations, never from input.
    return con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0]
