"""`wearhouse import`: what users actually have — a folder of FIT files or a Garmin Connect
account export (a zip holding zips of uploaded FIT files) — copied into landing/fit/<user>/.

Files are named by content hash, so the same activity imported twice (or present in two
exports) lands once. Zips are read in memory with limits (nesting depth, total size), and
nothing from inside an archive is used as a path.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.lake.ledger import is_safe_id

MAX_DEPTH = 4
MAX_TOTAL_BYTES = 8 << 30  # uncompressed, per import: a guard against zip bombs
FIT_SUFFIXES = (".fit", ".fit.gz")


class ImportProblem(ValueError):
    """The import cannot start (bad user id, missing path, unreadable archive)."""


@dataclass
class ImportReport:
    found: int = 0
    imported: list[str] = field(default_factory=list)  # landing paths, relative
    duplicates: int = 0
    skipped: list[str] = field(default_factory=list)  # unreadable archive members, with why


def _is_fit_name(name: str) -> bool:
    return name.lower().endswith(FIT_SUFFIXES)


def _zip_members(data: bytes, where: str, depth: int, budget: list[int]) -> Iterator[tuple]:
    if depth > MAX_DEPTH:
        yield where, None, "zip nested deeper than 4 levels"
        return
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        yield where, None, f"not a readable zip: {exc}"
        return
    for info in archive.infolist():
        name = info.filename
        if info.is_dir() or not (_is_fit_name(name) or name.lower().endswith(".zip")):
            continue
        budget[0] -= info.file_size
        if budget[0] < 0:
            yield f"{where}!{name}", None, "import larger than the 8 GiB limit"
            return
        try:
            content = archive.read(info)
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
            yield f"{where}!{name}", None, f"cannot be read: {exc}"
            continue
        if name.lower().endswith(".zip"):
            yield from _zip_members(content, f"{where}!{name}", depth + 1, budget)
        else:
            yield f"{where}!{name}", content, None


def find_fit_files(source: Path) -> Iterator[tuple[str, bytes | None, str | None]]:
    """(where, content, problem) for every FIT file in a folder, a zip, or zips in a folder."""
    budget = [MAX_TOTAL_BYTES]
    paths = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in paths:
        name = path.name.lower()
        if _is_fit_name(name):
            yield str(path), path.read_bytes(), None
        elif name.endswith(".zip"):
            yield from _zip_members(path.read_bytes(), str(path), 1, budget)


_SAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def _landing_name(where: str, digest: str) -> str:
    original = _SAFE_CHARS.sub("_", where.replace("\\", "/").rsplit("/", 1)[-1].split("!")[-1])
    suffix = ".fit.gz" if original.lower().endswith(".fit.gz") else ".fit"
    stem = original[: -len(suffix)] if original.lower().endswith(suffix) else original
    return f"{digest[:16]}-{stem[:60] or 'activity'}{suffix}"


def import_fit(
    source: Path,
    landing: Path,
    user_id: str,
    progress: Callable[[int, str], None] | None = None,
) -> ImportReport:
    if not is_safe_id(user_id):
        raise ImportProblem(f"user id {user_id!r} is not usable as a folder name")
    if not source.exists():
        raise ImportProblem(f"{source} does not exist")
    target_dir = landing / "fit" / user_id / "imported"
    target_dir.mkdir(parents=True, exist_ok=True)
    known = {p.name[:16] for p in target_dir.iterdir() if p.is_file()}
    report = ImportReport()
    for where, content, problem in find_fit_files(source):
        report.found += 1
        if progress:
            progress(report.found, where)
        if content is None:
            report.skipped.append(f"{where}: {problem}")
            continue
        digest = hashlib.sha256(content).hexdigest()
        if digest[:16] in known:
            report.duplicates += 1
            continue
        name = _landing_name(where, digest)
        tmp = target_dir / f".{name}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, target_dir / name)
        known.add(digest[:16])
        report.imported.append(f"fit/{user_id}/imported/{name}")
    return report
