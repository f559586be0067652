"""docs/data-model.md's "Warehouse tables" section, written from the declarations
(sql/tables.yaml) and the column types of a built warehouse.

    .venv/bin/python -m pipelines.warehouse.docs [--warehouse FILE] [--check]

Without ``--warehouse`` the bundled sample data is run in a temporary home first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import duckdb

from pipelines.warehouse.tables import tables

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-model.md"
BEGIN = "<!-- tables: written by `python -m pipelines.warehouse.docs` from sql/tables.yaml -->"
END = "<!-- /tables -->"


def tables_markdown(con: duckdb.DuckDBPyConnection) -> str:
    types = {
        (table, column): data_type
        for table, column, data_type in con.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = 'main'"
        ).fetchall()
    }
    parts = []
    for t in tables():
        parts.append(f"### `{t.name}` — {t.summary}\n")
        facts = []
        if t.key:
            facts.append("key " + ", ".join(f"`{c}`" for c in t.key))
        gold = f"by the UTC day of `{t.gold_day}`" if t.gold_day else "one partition"
        facts.append(f"gold {gold}")
        if t.refresh:
            facts.append(f"incremental: rows replaced from the `{t.refresh.stage}` change log")
        elif t.with_plans:
            facts.append("rebuilt when a plan changed")
        else:
            facts.append("rebuilt every run")
        parts.append(f"Model `sql/{t.name}.sql`; " + "; ".join(facts) + ".\n")
        if t.notes:
            parts.append(t.notes.strip() + "\n")
        parts.append("| column | type | meaning |\n|---|---|---|")
        for column, meaning in t.columns.items():
            data_type = types.get((t.name, column), "?")
            cell = meaning.replace("|", r"\|")
            parts.append(f"| `{column}` | {data_type} | {cell} |")
        parts.append("")
    return "\n".join(parts)


def with_tables(document: str, section: str) -> str:
    """``document`` with the text between the markers replaced by ``section``."""
    if BEGIN not in document or END not in document:
        raise ValueError(f"{DOC.name}: markers for the tables section not found")
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{section}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", help="a built warehouse.duckdb (default: run the demo)")
    parser.add_argument("--check", action="store_true", help="fail when the doc is stale")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wearhouse-docs-") as scratch:
        warehouse = args.warehouse
        if warehouse is None:
            from pipelines.cli import main as wearhouse

            home = Path(scratch) / "home"
            if wearhouse(["demo", "--home", str(home)]) != 0:
                return 1
            warehouse = str(home / "warehouse.duckdb")
        with duckdb.connect(warehouse, read_only=True) as con:
            section = tables_markdown(con)
    current = DOC.read_text()
    wanted = with_tables(current, section)
    if args.check:
        if wanted != current:
            print(f"{DOC} is stale: run python -m pipelines.warehouse.docs", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
