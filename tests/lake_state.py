"""The published state of a home, for comparing runs: every warehouse table and gold table."""

from __future__ import annotations

import duckdb
import polars as pl

from pipelines.lake.layout import LakeLayout
from pipelines.warehouse.build import MODELS
from pipelines.warehouse.gold import read_gold


def warehouse(settings) -> dict[str, list[tuple]]:
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        return {t: con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in MODELS}


def gold(settings) -> dict[str, pl.DataFrame]:
    """Each gold table's newest committed version, rows in a canonical order."""
    layout = LakeLayout(settings.lake)
    return {t: read_gold(layout, t).collect().sort(pl.all(), nulls_last=True) for t in MODELS}


def gold_files(settings) -> dict[str, pl.DataFrame]:
    """Each gold table read the naive way, every Parquet file under its folder."""
    layout = LakeLayout(settings.lake)
    return {
        t: pl.read_parquet(layout.gold_dir(t) / "**" / "*.parquet", hive_partitioning=True)
        .sort(pl.all(), nulls_last=True)
        .select(sorted(read_gold(layout, t).collect_schema().names()))
        for t in MODELS
    }


# When wearhouse received or quarantined an input: wall-clock facts that differ between homes.
WALL_CLOCK = "^.*(received|quarantined)_at$"


def assert_same_state(settings, reference) -> None:
    """Warehouse and gold of ``settings`` equal those of ``reference`` (but for when inputs were
    received); between runs the gold folders hold exactly the committed files."""
    ours, theirs = (
        {t: pl.from_arrow(_table(s, t)).select(pl.exclude(WALL_CLOCK)) for t in MODELS}
        for s in (settings, reference)
    )
    for table in MODELS:
        assert ours[table].sort(pl.all()).equals(theirs[table].sort(pl.all())), table
    ours, theirs = gold(settings), gold(reference)
    naive = gold_files(settings)
    for table in MODELS:
        assert ours[table].drop(WALL_CLOCK).equals(theirs[table].drop(WALL_CLOCK)), table
        assert naive[table].equals(ours[table].select(naive[table].columns)), table


def _table(settings, table: str):
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        return con.sql(f"SELECT * FROM {table}").to_arrow_table()
