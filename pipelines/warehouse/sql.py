"""Where the warehouse's SQL lives: ``sql/`` in a checkout, ``pipelines/_sql`` in a wheel."""

from __future__ import annotations

from pathlib import Path


def sql_dir() -> Path:
    """``sql/`` beside the packages in a checkout; ``pipelines/_sql`` in an installed wheel."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here.parent / "sql", here / "_sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("warehouse SQL folder not found (expected sql/ beside pipelines/)")


def model_query(model: str) -> str:
    return (sql_dir() / f"{model}.sql").read_text().strip().rstrip(";")
