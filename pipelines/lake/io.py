"""Parquet reads and atomic writes: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import polars as pl


def write_parquet_atomic(frame: pl.DataFrame | pl.LazyFrame, path: Path) -> Path:
    """Write to a temporary sibling and rename over ``path`` (rename is atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with full_disk_named(tmp):
            if isinstance(frame, pl.LazyFrame):
                frame.sink_parquet(tmp)
            else:
                frame.write_parquet(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# Free space below which a failed write is taken for a full disk.
FULL_DISK_BYTES = 1 << 20


@contextlib.contextmanager
def full_disk_named(path: Path) -> Iterator[None]:
    """A Polars write to ``path`` that fails on a full disk raises ENOSPC: the Parquet writer
    can report it as a format error ("Invalid thrift: transport error") when the footer is
    what fails, and an operator must read what happened."""
    try:
        yield
    except pl.exceptions.PolarsError as exc:
        if _free_bytes(path.parent) < FULL_DISK_BYTES:
            raise OSError(errno.ENOSPC, f"No space left on device writing {path.name}") from exc
        raise


def _free_bytes(folder: Path) -> float:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return float("inf")
    return stat.f_bavail * stat.f_frsize


def write_text_atomic(text: str, path: Path) -> Path:
    """A small text file, written beside ``path`` and renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_directory_atomic(directory: Path, fill: Callable[[Path], None]) -> Path:
    """Replace a directory as a whole: ``fill`` writes the new content into a sibling, which
    is then swapped in (two renames; a reader sees the old or the new folder)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.{uuid.uuid4().hex}.staging")
    old = directory.with_name(f".{directory.name}.{uuid.uuid4().hex}.old")
    try:
        staging.mkdir()
        fill(staging)
        if directory.exists():
            os.replace(directory, old)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return directory


def parquet_parts(directory: Path) -> list[Path]:
    """Committed parts of a table directory (temporary files start with a dot)."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.rglob("*.parquet") if not p.name.startswith("."))


def scan_parts(
    directory: Path, schema: Mapping[str, pl.DataType], names: Iterable[str] | None = None
) -> pl.LazyFrame:
    """Lazily scan a table's parts (only ``<name>.parquet`` of ``names``, when given); an
    empty table still has its schema."""
    if names is None:
        parts = parquet_parts(directory)
    else:
        parts = [p for p in (directory / f"{n}.parquet" for n in sorted(names)) if p.exists()]
    if not parts:
        return pl.LazyFrame(schema=dict(schema))
    return pl.scan_parquet(parts, missing_columns="insert", extra_columns="ignore").select(
        [pl.col(name).cast(dtype) for name, dtype in schema.items()]
    )


# What an interrupted writer leaves: the temporary siblings of write_parquet_atomic,
# write_text_atomic and replace_directory_atomic (lake), the warehouse's ``.building`` file and
# its WAL, and the importer's and ping fetcher's partial files (landing).
_LEFTOVER = re.compile(r"^\.(.*\.)?[0-9a-f]{32}\.(tmp|staging|old|building|part)(\.wal)?$")


def remove_leftovers(
    folder: Path, min_age_s: float = 0.0, *, recursive: bool = True, prefix: str = "."
) -> list[Path]:
    """Remove the temporary files and folders of interrupted writers under ``folder`` (at
    least ``min_age_s`` old: landing's writers may be at work while a run starts). Only names
    of the writers' own pattern (and starting with ``prefix``) are touched; links are not
    followed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    cutoff = time.time() - min_age_s
    for parent, dirs, files in os.walk(folder, followlinks=False):
        for name in [*files, *dirs]:
            path = Path(parent) / name
            if not (name.startswith(prefix) and _LEFTOVER.match(name)):
                continue
            if path.lstat().st_mtime > cutoff:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                dirs.remove(name)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        if not recursive:
            break
    return removed
