"""Build the DuckDB warehouse from silver with the SQL models, and export gold Parquet.

Each ``sql/<table>.sql`` file is one SELECT that builds one table from silver Parquet files
whose paths are bound as named parameters (``$sessions`` …), never formatted into the SQL
text. Two ways to apply them:

* **full** (first run, an erasure, a permission change): every model into a fresh DuckDB file
  that is swapped in, then every gold table rewritten;
* **incremental** (every other run): in one transaction on the existing file, delete the rows
  of the keys the silver stages changed (their change logs, ``pipelines.lake.partitions``) and
  insert the models' rows from the changed silver partitions only; then rewrite only the gold
  day files whose rows changed.

Either way a crash leaves the previous tables intact; change logs are cleared only after the
warehouse and gold have both taken them, and applying them twice gives the same tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl

from pipelines.lake.io import replace_directory_atomic, write_parquet_atomic
from pipelines.lake.layout import LakeLayout
from pipelines.lake.partitions import Changes, clear_changes, read_changes, sql_sources

# Build order: a model may read tables built before it.
MODELS = (
    "sessions",
    "intervals",
    "samples",
    "daily_summaries",
    "sleep_sessions",
    "epochs",
    "wellness_timeseries",
    "users",
    "planned_sessions",
    "planned_steps",
    "plan_matches",
    "plan_interval_matches",
    "quarantine",
)

# Analyst views and COMMENT ON statements, run after the models.
EXTRAS = ("views", "comments")

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
STAGES = ("activities", "wellness", "plans")


@dataclass(frozen=True)
class Refresh:
    """How an incremental run replaces a model's rows: the stage whose change log drives it
    and the rows to delete (a fixed predicate over the temporary key tables below)."""

    stage: str
    stale: str


_SESSIONS = "session_id IN (SELECT key FROM _changed_session)"
_WELLNESS_DAY = (
    "coalesce(CAST(start_time_utc AS DATE), DATE '0001-01-01') IN (SELECT day FROM _changed_day)"
)
_PLANNED = "planned_session_id IN (SELECT key FROM _changed_planned)"
INCREMENTAL = {
    "sessions": Refresh("activities", _SESSIONS),
    "intervals": Refresh("activities", _SESSIONS),
    "samples": Refresh("activities", _SESSIONS),
    "daily_summaries": Refresh("wellness", _WELLNESS_DAY),
    "sleep_sessions": Refresh("wellness", _WELLNESS_DAY),
    "epochs": Refresh("wellness", _WELLNESS_DAY),
    "wellness_timeseries": Refresh(
        "wellness",
        "(user_id, summary_type, coalesce(summary_id, '')) "
        "IN (SELECT user_id, summary_type, summary_id FROM _changed_summary)",
    ),
    "plan_matches": Refresh("plans", _PLANNED),
    "plan_interval_matches": Refresh("plans", _PLANNED),
}
# Every other model (users, planned sessions and steps, quarantine) is small and replaced whole;
# planned sessions and steps only when the plans stage says a plan changed.
PLANNED = ("planned_sessions", "planned_steps")

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def sql_dir() -> Path:
    """``sql/`` beside the packages in a checkout; ``pipelines/_sql`` in an installed wheel."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here.parent / "sql", here / "_sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("warehouse SQL folder not found (expected sql/ beside pipelines/)")


def model_query(model: str) -> str:
    return (sql_dir() / f"{model}.sql").read_text().strip().rstrip(";")


def silver_parameters(
    layout: LakeLayout, changed_days: dict[str, set[date]] | None = None
) -> dict[str, list[str]]:
    """Parameter → silver files: all of them, or (incremental) only the changed days."""
    params = {name: [str(layout.silver_path(name))] for name in FILE_INPUTS}
    for name, stage in PARTITIONED_INPUTS.items():
        days = None if changed_days is None else changed_days.get(stage, set())
        params[name] = sql_sources(layout, name, days)
    return params


def _bound(query: str, params: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: params[name] for name in set(_PARAM.findall(query))}


# DuckDB's own memory for a build or an update; beyond it, joins, sorts and aggregates spill
# to a temporary folder beside the warehouse (its default is most of the machine's memory).
DUCKDB_MEMORY_LIMIT = "2GB"
# Gold is exported a few days at a time, at most this many rows (a day larger than that goes
# alone), so a table's rows are never all in memory.
GOLD_EXPORT_ROWS = 1_000_000


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
    """(Re)build the tables from all of silver atomically; return their row counts."""
    params = silver_parameters(layout)
    con.execute("BEGIN TRANSACTION")
    try:
        for model in models:
            query = model_query(model)
            # Identifiers come from MODELS, never from input; values are bound.
            con.execute(f'CREATE OR REPLACE TABLE "{model}" AS {query}', _bound(query, params))
        _extras(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return {model: table_rows(con, model) for model in models}


def _extras(con: duckdb.DuckDBPyConnection) -> None:
    # Views and descriptions take no parameters; they need every table above.
    for extra in EXTRAS:
        con.execute((sql_dir() / f"{extra}.sql").read_text())
    con.execute("CREATE SCHEMA IF NOT EXISTS wearhouse_meta")
    con.execute(
        "CREATE OR REPLACE TABLE wearhouse_meta.build AS "
        "SELECT CAST($models AS VARCHAR) AS models_sha256, now() AS built_at",
        {"models": models_fingerprint()},
    )


def models_fingerprint() -> str:
    """sha256 of every model's SQL: rows of tables built by other SQL must not be mixed with
    rows inserted by this one, so a change means a full build."""
    digest = hashlib.sha256()
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


def build_warehouse_file(target: Path, layout: LakeLayout) -> dict[str, int]:
    """Build every table into a fresh DuckDB file, export gold, then swap it in atomically.

    A new file means readers never see a half-built warehouse, two runs cannot interleave
    writes, and erased users leave nothing behind in free pages of an old file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f".{target.name}.{uuid.uuid4().hex}.building")
    try:
        with _connect(building) as con:
            rows = build_warehouse(con, layout)
            for model in MODELS:
                export_gold(con, layout, model)
        # A WAL left by a crashed writer of the old file must not be replayed onto the new one.
        Path(f"{target}.wal").unlink(missing_ok=True)
        os.replace(building, target)
    finally:
        building.unlink(missing_ok=True)
        Path(f"{building}.wal").unlink(missing_ok=True)
    return rows


@dataclass
class WarehouseRefresh:
    full: bool
    rows: dict[str, int]
    gold_days_rewritten: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per model (incremental runs)


def refresh_warehouse(target: Path, layout: LakeLayout) -> WarehouseRefresh:
    """Apply the silver stages' pending changes: incrementally, or a full build when one
    asks for it (or there is no warehouse yet)."""
    pending = {stage: read_changes(layout, stage) for stage in STAGES}
    fresh = not target.exists() or not built_with_current_models(target)
    if fresh or any(c.full for c in pending.values()):
        result = WarehouseRefresh(True, build_warehouse_file(target, layout))
    else:
        result = _apply_changes(target, layout, pending)
    for stage, changes in pending.items():
        clear_changes(layout, stage, changes)
    return result


def _apply_changes(target: Path, layout: LakeLayout, pending: dict[str, Changes]):
    days = {
        stage: {date.fromisoformat(d) for d in changes.get("day")}
        for stage, changes in pending.items()
    }
    params = silver_parameters(layout, days)
    gold_days: dict[str, set[str]] = {}
    seconds: dict[str, float] = {}
    with _connect(target) as con:
        con.execute("BEGIN TRANSACTION")
        try:
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
                "CREATE OR REPLACE TEMP TABLE _changed_day AS SELECT CAST(unnest($days) AS DATE) "
                "AS day",
                {"days": [d.isoformat() for d in sorted(days["wellness"])]},
            )
            models = [
                m for m in MODELS if m not in PLANNED or pending["plans"].get("planned_changed")
            ]
            for model in models:
                started = time.perf_counter()
                refresh = INCREMENTAL.get(model)
                stale = refresh.stale if refresh else "true"
                gold_days[model] = _gold_days(con, model, stale) if refresh else set()
                con.execute(f'DELETE FROM "{model}" WHERE {stale}')
                query = model_query(model)
                con.execute(
                    f'INSERT INTO "{model}" BY NAME SELECT * FROM ({query})', _bound(query, params)
                )
                if refresh:
                    gold_days[model] |= _gold_days(con, model, stale)
                seconds[model] = time.perf_counter() - started
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        rows = {model: table_rows(con, model) for model in MODELS}
        rewritten = 0
        for model in models:
            started = time.perf_counter()
            if model in INCREMENTAL and model in GOLD_DAY_COLUMN:
                rewritten += export_gold_days(con, layout, model, gold_days[model])
            else:
                export_gold(con, layout, model)
            seconds[f"gold:{model}"] = time.perf_counter() - started
    return WarehouseRefresh(False, rows, rewritten, {k: round(v, 3) for k, v in seconds.items()})


def table_rows(con: duckdb.DuckDBPyConnection, table: str) -> int:
    # Identifiers come from MODELS, never from input.
    return con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]


# --- gold -----------------------------------------------------------------------------------

# Gold tables are hive-partitioned by month of this column, one file per day inside
# (``gold/<table>/month=2026-03/2026-03-14.parquet``, rows sorted by user), so a dashboard
# reading one month touches one folder, one user's rows prune by statistics, and an
# incremental run rewrites only the days that changed.
GOLD_DAY_COLUMN = {
    "sessions": "start_time_utc",
    "intervals": "start_time_utc",
    "samples": "time_utc",
    "daily_summaries": "calendar_date",
    "sleep_sessions": "calendar_date",
    "epochs": "start_time_utc",
    "wellness_timeseries": "time_utc",
    "planned_sessions": "planned_date",
    "plan_matches": "planned_date",
    "plan_interval_matches": "start_time_utc",
}
UNKNOWN = "unknown"  # rows without a date: month=unknown/unknown.parquet


def _gold_day_expr(table: str) -> str:
    day = f"strftime(CAST(\"{GOLD_DAY_COLUMN[table]}\" AS DATE), '%Y-%m-%d')"
    return f"coalesce({day}, '{UNKNOWN}')"


def _gold_days(con: duckdb.DuckDBPyConnection, table: str, where: str) -> set[str]:
    if table not in GOLD_DAY_COLUMN:
        return set()
    sql = f'SELECT DISTINCT {_gold_day_expr(table)} FROM "{table}" WHERE {where}'
    return {row[0] for row in con.execute(sql).fetchall()}


def _gold_day_chunks(con: duckdb.DuckDBPyConnection, table: str) -> list[list[str]]:
    """The table's gold days in order, grouped into runs of at most GOLD_EXPORT_ROWS rows."""
    sql = f'SELECT {_gold_day_expr(table)} AS d, count(*) FROM "{table}" GROUP BY d ORDER BY d'
    chunks: list[list[str]] = []
    rows = GOLD_EXPORT_ROWS
    for day, n in con.execute(sql).fetchall():
        if rows + n > GOLD_EXPORT_ROWS:
            chunks.append([])
            rows = 0
        chunks[-1].append(day)
        rows += n
    return chunks


def gold_file(layout: LakeLayout, table: str, day: str) -> Path:
    month = day[:7] if day != UNKNOWN else UNKNOWN
    return layout.gold_dir(table) / f"month={month}" / f"{day}.parquet"


def _gold_frame(con: duckdb.DuckDBPyConnection, table: str, days: list[str] | None):
    """Rows of ``days`` (all when None) with their gold day. Days select by range on the raw
    column: formatting every row's date to compare would scan the whole table slowly."""
    column = f'"{GOLD_DAY_COLUMN[table]}"'
    where, params = "", {}
    if days is not None:
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
    sql = f'SELECT *, {_gold_day_expr(table)} AS _gold_day FROM "{table}" {where}'
    frame = pl.from_arrow(con.sql(sql, params=params).to_arrow_table())
    sort_by = [c for c in ("user_id", GOLD_DAY_COLUMN[table]) if c in frame.columns]
    return frame.sort(sort_by, nulls_last=True)


def _write_days(frame: pl.DataFrame, layout: LakeLayout, table: str, root: Path) -> set[str]:
    written = set()
    for (day,), part in frame.partition_by("_gold_day", as_dict=True).items():
        path = root / gold_file(layout, table, day).relative_to(layout.gold_dir(table))
        write_parquet_atomic(part.drop("_gold_day"), path)
        written.add(day)
    return written


def export_gold(con: duckdb.DuckDBPyConnection, layout: LakeLayout, table: str) -> Path:
    """Replace ``gold/<table>/`` as a whole (built beside it, then swapped in)."""

    def fill(staging: Path) -> None:
        if table in GOLD_DAY_COLUMN:
            chunks = _gold_day_chunks(con, table)
            if not chunks:
                _gold_frame(con, table, []).drop("_gold_day").write_parquet(
                    staging / "part-0.parquet"
                )
            for days in chunks:
                _write_days(_gold_frame(con, table, days), layout, table, staging)
        else:
            frame = pl.from_arrow(con.sql(f'SELECT * FROM "{table}"').to_arrow_table())
            frame.write_parquet(staging / "part-0.parquet")

    return replace_directory_atomic(layout.gold_dir(table), fill)


def export_gold_days(
    con: duckdb.DuckDBPyConnection, layout: LakeLayout, table: str, days: set[str]
) -> int:
    """Rewrite (or remove) the gold files of these days; each file is replaced atomically."""
    if not days:
        return 0
    frame = _gold_frame(con, table, sorted(days))
    written = _write_days(frame, layout, table, layout.gold_dir(table)) if frame.height else set()
    for day in days - written:
        gold_file(layout, table, day).unlink(missing_ok=True)
    # An empty table was exported as one schema-only file; it is stale once days exist.
    if written:
        (layout.gold_dir(table) / "part-0.parquet").unlink(missing_ok=True)
    return len(days)
