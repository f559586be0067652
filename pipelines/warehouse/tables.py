"""The warehouse tables as declared once in ``sql/tables.yaml``: what a row is, its key, its
gold partitioning, how an incremental run replaces its rows, and the meaning of every column.

Building (``build.py``), gold (``gold.py``), asset checks, DuckDB's ``COMMENT``s and
docs/data-model.md all read these declarations; no other module lists the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from pipelines.warehouse.sql import sql_dir

DECLARATIONS = "tables.yaml"
_FIELDS = {"summary", "notes", "key", "gold_day", "refresh", "with_plans", "columns"}
STAGES = ("activities", "wellness", "plans")


@dataclass(frozen=True)
class Refresh:
    """How an incremental run replaces a table's rows: the stage whose change log drives it
    and the rows to delete (a fixed predicate over the temporary key tables of build.py)."""

    stage: str
    stale: str


@dataclass(frozen=True)
class Table:
    name: str
    summary: str
    columns: dict[str, str]  # name → meaning, in the model's column order
    notes: str = ""
    key: tuple[str, ...] = ()
    gold_day: str | None = None
    refresh: Refresh | None = None
    with_plans: bool = False

    @property
    def model_sql(self) -> Path:
        return sql_dir() / f"{self.name}.sql"


def declarations_path() -> Path:
    return sql_dir() / DECLARATIONS


@cache
def tables() -> tuple[Table, ...]:
    """Every table in build order, checked for what the rest of the code relies on."""
    raw = yaml.safe_load(declarations_path().read_text())
    return tuple(_table(name, spec) for name, spec in raw.items())


def _table(name: str, spec: dict) -> Table:
    where = f"{DECLARATIONS}: table {name}"
    unknown = set(spec) - _FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    columns = {str(k): str(v) for k, v in (spec.get("columns") or {}).items()}
    if not columns or not spec.get("summary"):
        raise ValueError(f"{where}: a summary and its columns are required")
    key = tuple(spec.get("key") or ())
    refresh = spec.get("refresh")
    if refresh is not None:
        refresh = Refresh(refresh["stage"], refresh["stale"])
        if refresh.stage not in STAGES:
            raise ValueError(f"{where}: refresh stage {refresh.stage!r} is not one of {STAGES}")
    gold_day = spec.get("gold_day")
    for column in (*key, *([gold_day] if gold_day else [])):
        if column not in columns:
            raise ValueError(f"{where}: {column!r} is not one of its columns")
    table = Table(
        name=name,
        summary=str(spec["summary"]),
        columns=columns,
        notes=str(spec.get("notes") or ""),
        key=key,
        gold_day=gold_day,
        refresh=refresh,
        with_plans=bool(spec.get("with_plans", False)),
    )
    if not table.model_sql.is_file():
        raise ValueError(f"{where}: no model {table.model_sql.name}")
    return table


def table_names() -> tuple[str, ...]:
    return tuple(t.name for t in tables())


def table(name: str) -> Table:
    for candidate in tables():
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def comment_statements() -> list[str]:
    """DuckDB ``COMMENT ON`` statements for every table and column (identifiers come from the
    declarations, text is quoted)."""
    statements = []
    for t in tables():
        statements.append(f'COMMENT ON TABLE "{t.name}" IS {_quoted(t.summary)}')
        for column, meaning in t.columns.items():
            statements.append(f'COMMENT ON COLUMN "{t.name}"."{column}" IS {_quoted(meaning)}')
    return statements
