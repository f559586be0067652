"""Run the warehouse SQL models in one transaction and export them as gold Parquet.

Each ``sql/<table>.sql`` file builds one table from silver Parquet files whose paths are
bound as named parameters (``$sessions`` …), never formatted into the SQL text. The whole
build is one DuckDB transaction: a crash leaves the previous tables intact.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import polars as pl

from pipelines.lake.io import write_parquet_atomic
from pipelines.lake.layout import LakeLayout

# Build order: a model may read tables built before it.
MODELS = ("sessions", "intervals", "samples", "quarantine")

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def sql_dir() -> Path:
    """``sql/`` beside the packages in a checkout; ``pipelines/_sql`` in an installed wheel."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here.parent / "sql", here / "_sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("warehouse SQL folder not found (expected sql/ beside pipelines/)")


def silver_parameters(layout: LakeLayout) -> dict[str, str]:
    names = ("sessions", "samples", "intervals", "quarantine")
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
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return {model: table_rows(con, model) for model in models}


def table_rows(con: duckdb.DuckDBPyConnection, table: str) -> int:
    # Identifiers come from MODELS, never from input.
    return con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]


def export_gold(con: duckdb.DuckDBPyConnection, layout: LakeLayout, table: str) -> Path:
    frame = pl.from_arrow(con.sql(f'SELECT * FROM "{table}"').to_arrow_table())
    return write_parquet_atomic(frame, layout.gold_dir(table) / f"{table}.parquet")
