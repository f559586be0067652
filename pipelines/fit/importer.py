"""`wearhouse import`: what users actually have — a folder of FIT files or a Garmin Connect
account export (a zip holding zips of uploaded FIT files) — copied into landing/fit/<user>/.

Files are named by content hash, so the same activity imported twice (or present in two
exports) lands once. Nothing from inside an archive is used as a path.

Every file is streamed to landing in chunks, never read whole, and the bounds are checked on
the bytes actually produced while streaming (a zip header's sizes can lie):

* ``MAX_FIT_BYTES`` (pipelines.fit.decode, 256 MiB) per FIT file, as stored;
* ``MAX_COMPRESSION_RATIO`` (200) per zip member, output against its compressed size;
* ``MAX_TOTAL_BYTES`` (8 GiB) of uncompressed data per import, nested zips included;
* ``MAX_ENTRIES`` per archive, ``MAX_FILES`` FIT files per import, ``MAX_DEPTH`` nesting.

A refused member goes to the report's ``skipped`` list with the reason; the import goes on
with the next one (or stops, with the reason, once the import-wide bounds are reached).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pipelines.fit.decode import COMPRESSION_RATIO_FLOOR, MAX_COMPRESSION_RATIO, MAX_FIT_BYTES
from pipelines.lake.ledger import is_safe_id

MAX_DEPTH = 4
MAX_TOTAL_BYTES = 8 << 30  # uncompressed, per import: a guard against zip bombs
#: Entries of one archive (files and folders), checked on the end-of-central-directory record
#: before zipfile builds one object per entry. A Garmin export of many years holds thousands.
MAX_ENTRIES = 100_000
#: The central directory zipfile reads into memory at once (its size is in the end record).
MAX_CENTRAL_DIRECTORY_BYTES = 32 << 20
MAX_FILES = 100_000  # FIT files per import
FIT_SUFFIXES = (".fit", ".fit.gz")
_CHUNK = 1 << 20
# What reading a damaged or unsupported zip member can raise (zipfile checks the CRC at the end).
_MEMBER_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    RuntimeError,  # encrypted member
    NotImplementedError,  # compression method zipfile lacks
    ValueError,
)


class ImportProblem(ValueError):
    """The import cannot start (bad user id, missing path, unreadable archive)."""


@dataclass
class ImportReport:
    found: int = 0
    imported: list[str] = field(default_factory=list)  # landing paths, relative
    duplicates: int = 0
    skipped: list[str] = field(default_factory=list)  # unreadable archive members, with why


class _Refused(Exception):
    """One file is refused (the reason is the message); the import goes on."""


class _Stop(Exception):
    """An import-wide bound is reached: nothing more is read."""


@dataclass
class _Budget:
    """Uncompressed bytes left for this import, spent as they are produced."""

    left: int = field(default_factory=lambda: MAX_TOTAL_BYTES)

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _Stop(f"import larger than the {MAX_TOTAL_BYTES:,} bytes limit; stopped")


@dataclass
class _Found:
    where: str
    open: Callable[[], AbstractContextManager[IO[bytes]]] | None
    compressed_size: int | None = None  # of a zip member: the ratio bound applies
    problem: str | None = None


def _is_fit_name(name: str) -> bool:
    return name.lower().endswith(FIT_SUFFIXES)


def _copy(
    source: IO[bytes],
    target: IO[bytes],
    budget: _Budget,
    limit: int,
    compressed_size: int | None,
    digest: hashlib._Hash | None = None,
) -> int:
    """Copy in chunks, checking the size, ratio and import bounds on every chunk."""
    total = 0
    while True:
        chunk = source.read(_CHUNK)
        if not chunk:
            return total
        total += len(chunk)
        if total > limit:
            raise _Refused(f"larger than the {limit >> 20} MiB limit")
        if (
            compressed_size is not None
            and total > COMPRESSION_RATIO_FLOOR
            and total > MAX_COMPRESSION_RATIO * max(compressed_size, 1)
        ):
            raise _Refused(
                f"expands more than {MAX_COMPRESSION_RATIO}x its compressed size "
                f"({compressed_size:,} bytes): a zip bomb"
            )
        budget.spend(len(chunk))
        if digest is not None:
            digest.update(chunk)
        target.write(chunk)


def _open_archive(handle: IO[bytes]) -> zipfile.ZipFile:
    """zipfile.ZipFile with the entry-count and central-directory bounds checked first."""
    try:
        # the end-of-central-directory record (zip64 aware): what zipfile is about to load
        end = zipfile._EndRecData(handle)
    except OSError:
        end = None
    if end is not None:
        if end[zipfile._ECD_ENTRIES_TOTAL] > MAX_ENTRIES:
            raise _Refused(f"more than {MAX_ENTRIES:,} entries")
        if end[zipfile._ECD_SIZE] > MAX_CENTRAL_DIRECTORY_BYTES:
            raise _Refused(f"central directory above {MAX_CENTRAL_DIRECTORY_BYTES >> 20} MiB")
    handle.seek(0)
    archive = zipfile.ZipFile(handle)
    if len(archive.infolist()) > MAX_ENTRIES:  # the end record's count can lie
        raise _Refused(f"more than {MAX_ENTRIES:,} entries")
    return archive


def _zip_members(
    handle: IO[bytes], where: str, depth: int, budget: _Budget, archive_size: int
) -> Iterator[_Found]:
    if depth > MAX_DEPTH:
        yield _Found(where, None, problem=f"zip nested deeper than {MAX_DEPTH} levels")
        return
    try:
        archive = _open_archive(handle)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        yield _Found(where, None, problem=f"not a readable zip: {exc}")
        return
    except _Refused as exc:
        yield _Found(where, None, problem=f"zip refused: {exc}")
        return
    with archive:
        for info in archive.infolist():
            name = info.filename
            inner = f"{where}!{name}"
            if info.is_dir() or not (_is_fit_name(name) or name.lower().endswith(".zip")):
                continue
            # a member's compressed bytes cannot exceed the archive: bound the claim by it
            compressed = min(info.compress_size, archive_size)
            if not name.lower().endswith(".zip"):
                yield _Found(inner, lambda info=info: archive.open(info), compressed)
                continue
            # a nested zip needs random access: spooled to an anonymous temporary file
            with tempfile.TemporaryFile() as spool:
                try:
                    with archive.open(info) as member:
                        size = _copy(member, spool, budget, budget.left, compressed)
                except _Refused as exc:
                    yield _Found(inner, None, problem=str(exc))
                    continue
                except _MEMBER_ERRORS as exc:
                    yield _Found(inner, None, problem=f"cannot be read: {exc}")
                    continue
                spool.seek(0)
                yield from _zip_members(spool, inner, depth + 1, budget, size)


def find_fit_files(source: Path, budget: _Budget | None = None) -> Iterator[_Found]:
    """Every FIT file in a folder, a zip, or zips in a folder, as something to stream from
    (or the reason it cannot be). Nested zips spend the import budget as they are unpacked."""
    budget = budget or _Budget()
    paths = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in paths:
        name = path.name.lower()
        if _is_fit_name(name):
            yield _Found(str(path), lambda path=path: open(path, "rb"))  # noqa: SIM115
        elif name.endswith(".zip"):
            try:
                handle = open(path, "rb")  # noqa: SIM115 (closed below, after its members)
            except OSError as exc:
                yield _Found(str(path), None, problem=f"cannot be read: {exc}")
                continue
            with handle:
                size = os.fstat(handle.fileno()).st_size
                yield from _zip_members(handle, str(path), 1, budget, size)


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
    budget = _Budget()
    try:
        for found in find_fit_files(source, budget):
            report.found += 1
            if progress:
                progress(report.found, found.where)
            if found.open is None:
                report.skipped.append(f"{found.where}: {found.problem}")
                continue
            if report.found > MAX_FILES:
                raise _Stop(f"more than {MAX_FILES:,} FIT files in one import; stopped")
            _land(found, target_dir, user_id, budget, known, report)
    except _Stop as exc:
        report.skipped.append(f"{source}: {exc}")
    return report


def _land(
    found: _Found,
    target_dir: Path,
    user_id: str,
    budget: _Budget,
    known: set[str],
    report: ImportReport,
) -> None:
    """Stream one FIT file into landing (temporary name, then renamed when complete)."""
    tmp = target_dir / f".{uuid.uuid4().hex}.tmp"
    digest = hashlib.sha256()
    try:
        with found.open() as source, open(tmp, "wb") as target:
            _copy(source, target, budget, MAX_FIT_BYTES, found.compressed_size, digest)
    except (_Refused, *_MEMBER_ERRORS) as exc:
        tmp.unlink(missing_ok=True)
        reason = str(exc) if isinstance(exc, _Refused) else f"cannot be read: {exc}"
        report.skipped.append(f"{found.where}: {reason}")
        return
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    hexdigest = digest.hexdigest()
    if hexdigest[:16] in known:
        tmp.unlink()
        report.duplicates += 1
        return
    name = _landing_name(found.where, hexdigest)
    os.replace(tmp, target_dir / name)
    known.add(hexdigest[:16])
    report.imported.append(f"fit/{user_id}/imported/{name}")
