"""Run the warehouse SQL models in one transaction and export them as gold Parquet.

Each ``sql/<table>.sql`` file builds one table from silver Parquet files whose paths are
bound as named parameters (``$sessions`` …), never formatted into the SQL text. The whole
build is one DuckDB transaction: a crash leaves the previous tables intact.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import duckdb
import polars as pl

from pipelines.lake.io import write_partitioned_atomic
from pipelines.lake.layout import LakeLayout

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

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def sql_dir() -> Path:
    """``sql/`` beside the packages in a checkout; ``pipelines/_sql`` in an installed wheel."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here.parent / "sql", here / "_sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("warehouse SQL folder not found (expected sql/ beside pipelines/)")


def silver_parameters(layout: LakeLayout) -> dict[str, str]:
    names = (
        "sessions",
        "samples",
        "intervals",
        "quarantine",
        "users",
        "garmin_dailies",
        "garmin_sleeps",
        "garmin_epochs",
        "garmin_timeseries",
        "planned_sessions",
        "planned_steps",
        "plan_matches",
        "plan_interval_matches",
    )
    return {name: str(layout.silver_path(name)) for name in names}


def run_model(con: duckdb.DuckDBPyConnection, sql_file: Path, params: dict[str, str]) -> None:
    text = sql_file.read_text()
    used = {name: params[name] for name in set(_PARAM.findall(text))}
    con.execute(text, used)


def build_warehouse(
    con: duckdb.DuckDBPyConnection, layout: LakeLayout, models: tuple[str, ...] = MODELS
) -> dict[str, int]:
    """(Re)build the tables atomically; return their row counts."""
    params = silver_parameters(layout)
    folder = sql_dir()
    con.execute("BEGIN TRANSACTION")
    try:
        for model in models:
            run_model(con, folder / f"{model}.sql", params)
        # Views and descriptions take no parameters; they need every table above.
        for extra in EXTRAS:
            con.execute((folder / f"{extra}.sql").read_text())
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return {model: table_rows(con, model) for model in models}


def build_warehouse_file(target: Path, layout: LakeLayout) -> dict[str, int]:
    """Build every table into a fresh DuckDB file, export gold, then swap it in atomically.

    A new file each time means readers never see a half-built warehouse, two runs cannot
    interleave writes, and erased users leave nothing behind in free pages of an old file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f".{target.name}.{uuid.uuid4().hex}.building")
    try:
        with duckdb.connect(str(building)) as con:
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


def table_rows(con: duckdb.DuckDBPyConnection, table: str) -> int:
    # Identifiers come from MODELS, never from input.
    return con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]


# Gold tables are hive-partitioned by month of this column (rows sorted by user inside), so a
# dashboard reading one month touches one folder and one user's rows prune by statistics.
GOLD_MONTH_COLUMN = {
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


def export_gold(con: duckdb.DuckDBPyConnection, layout: LakeLayout, table: str) -> Path:
    """Replace ``gold/<table>/`` as a whole (built beside it, then swapped in)."""
    frame = pl.from_arrow(con.sql(f'SELECT * FROM "{table}"').to_arrow_table())
    month_of = GOLD_MONTH_COLUMN.get(table)
    if month_of is None:
        return write_partitioned_atomic(frame, layout.gold_dir(table), [])
    sort_by = [c for c in ("user_id", month_of) if c in frame.columns]
    frame = frame.with_columns(
        pl.col(month_of).dt.strftime("%Y-%m").fill_null("unknown").alias("month")
    ).sort(sort_by, nulls_last=True)
    return write_partitioned_atomic(frame, layout.gold_dir(table), ["month"])
