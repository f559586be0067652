"""The raw ledger: every landing file recorded once, by content hash.

Landing is immutable. A run lists it, hashes only files it has not seen at the same
(path, size, mtime), and appends their rows as one new ledger part. Re-running over the same
landing therefore hashes nothing and appends nothing.

Landing is trusted only for what is inside it: the walk never follows a symbolic link, an
entry that is not a regular file (a link, a FIFO, a device) is recorded with its problem and
never opened, and ``read_landed`` opens each path component without following links, so a
file swapped for a link after it was listed is refused too. Every row with a problem is
quarantined here (stage ``ledger``) and no ingest stage takes it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import polars as pl

from pipelines.lake.io import scan_parts, write_parquet_atomic
from pipelines.lake.layout import LakeLayout
from pipelines.lake.quarantine import QuarantineBatch

LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "path": pl.String(),  # relative to landing, POSIX separators
    # Content hash: the input's identity. For files in a user's folder (fit/, plans/) it also
    # covers the user id: one plan copied to two athletes' folders is two inputs, not one.
    "sha256": pl.String(),
    "kind": pl.String(),  # garmin_push/ping/fetched, fit, fit_sidecar, plan, unknown
    "user_id": pl.String(),  # from the folder name for fit/ and plans/, validated
    "size_bytes": pl.Int64(),
    "mtime_ns": pl.Int64(),
    "received_at": pl.Datetime("us", "UTC"),  # file mtime: when it landed
    "registered_at": pl.Datetime("us", "UTC"),  # when this ledger first saw it
    "problem": pl.String(),  # why the file cannot be processed (bad user folder, …)
}

# Ids become folder names; anything else (slashes, "..", spaces, control characters) is refused.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")

_IGNORED_SUFFIXES = (".tmp", ".part", ".partial")

# No landed input larger than this is read by any stage (a Garmin body is at most ~100 MB,
# a FIT file a few MB; the receiver's own limit is lower).
MAX_INPUT_BYTES = 512 << 20
LEDGER_STAGE = "ledger"


class LandingRefused(ValueError):
    """A landing entry that must not be read: a link, a non-regular file, too large, changed."""


def is_safe_id(value: str) -> bool:
    """True when ``value`` can be used as one path component without any path tricks."""
    return bool(_SAFE_ID.match(value)) and ".." not in value


@dataclass(frozen=True)
class Classified:
    kind: str
    user_id: str | None
    problem: str | None


def classify(relative: PurePosixPath) -> Classified:
    """Decide what a landing file is from where it was put."""
    parts = relative.parts
    name = relative.name.lower()
    if parts[:2] == ("garmin", "push") and name.endswith(".json"):
        return Classified("garmin_push", None, None)
    if parts[:2] == ("garmin", "ping") and name.endswith(".json"):
        return Classified("garmin_ping", None, None)
    if parts[:2] == ("garmin", "fetched") and name.endswith(".json"):
        return Classified("garmin_fetched", None, None)
    if parts[:1] in (("fit",), ("plans",)):
        kind = "fit" if parts[0] == "fit" else "plan"
        if len(parts) < 3:
            return Classified(kind, None, f"{kind} files belong in {parts[0]}/<user_id>/")
        user_id = parts[1]
        if not is_safe_id(user_id):
            return Classified(kind, None, f"unsafe user folder name {user_id!r}")
        if kind == "fit" and name.endswith(".ping.json"):
            # Ping metadata landed beside a downloaded activity file (links it to activityId).
            return Classified("fit_sidecar", user_id, None)
        if kind == "fit" and name.endswith((".tcx", ".gpx")):
            return Classified(kind, user_id, "TCX/GPX activity files are not decoded (FIT only)")
        if kind == "fit" and not (name.endswith(".fit") or name.endswith(".fit.gz")):
            return Classified(kind, user_id, "not a .fit or .fit.gz file")
        return Classified(kind, user_id, None)
    return Classified("unknown", None, "no ingest handles files in this landing folder")


def content_sha256(chunks: Iterable[bytes], owner: str | None = None) -> str:
    """An input's identity: sha256 of its bytes, preceded by ``owner`` and a newline when
    given."""
    digest = hashlib.sha256()
    if owner is not None:
        digest.update(f"{owner}\n".encode())
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path, chunk_size: int = 1 << 20, owner: str | None = None) -> str:
    """``content_sha256`` of a file, read in chunks."""
    with path.open("rb") as handle:
        return content_sha256(iter(lambda: handle.read(chunk_size), b""), owner)


def read_ledger(layout: LakeLayout) -> pl.DataFrame:
    return scan_parts(layout.ledger_dir, LEDGER_SCHEMA).collect()


@dataclass(frozen=True)
class LandingEntry:
    path: Path
    stat: os.stat_result  # of the entry itself (lstat: a link is not followed)

    @property
    def problem(self) -> str | None:
        mode = self.stat.st_mode
        if stat.S_ISLNK(mode):
            return "a symbolic link: landing takes only files written into it, links are refused"
        if not stat.S_ISREG(mode):
            return "not a regular file (a FIFO, socket or device): refused"
        if self.stat.st_size > MAX_INPUT_BYTES:
            return f"{self.stat.st_size:,} bytes: larger than the {MAX_INPUT_BYTES:,}-byte bound"
        return None


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(_IGNORED_SUFFIXES)


def landing_entries(landing: Path) -> Iterator[LandingEntry]:
    """Every entry in landing that is not a folder, in path order; links are not followed."""
    if not landing.is_dir():
        return
    for folder, dirs, files in os.walk(landing, followlinks=False):
        # A link to a folder is listed as an entry of its own (refused), never walked into.
        linked = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        dirs[:] = sorted(d for d in dirs if d not in linked)
        for name in sorted([*files, *linked]):
            if not _ignored(name):
                path = Path(folder) / name
                yield LandingEntry(path, path.lstat())


def landing_files(landing: Path) -> list[Path]:
    """Regular files in landing (what a stage may read), in path order."""
    return sorted(e.path for e in landing_entries(landing) if stat.S_ISREG(e.stat.st_mode))


def _open_no_links(landing: Path, relative: str) -> int:
    """A read-only descriptor of ``landing/relative``, each component opened without following
    a link (``O_NOFOLLOW`` per component, relative to its parent's descriptor)."""
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("", ".", "..") or "/" in p for p in parts):
        raise LandingRefused(f"not a landing path: {relative!r}")
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(landing, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            except NotADirectoryError as exc:  # O_NOFOLLOW|O_DIRECTORY on a link: ENOTDIR
                raise LandingRefused(f"{part!r} is a link, not a folder") from exc
            os.close(fd)
            fd = inner
        try:
            # O_NONBLOCK: opening a FIFO put in place of the file must not wait for a writer.
            return os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LandingRefused("a symbolic link: refused") from exc
            raise
    finally:
        os.close(fd)


def read_landed_path(landing: Path, relative: str, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of ``landing/relative``, refusing (``LandingRefused``) a link anywhere on the
    path, a non-regular file and more than ``max_bytes``; ``FileNotFoundError`` when absent."""
    fd = _open_no_links(landing, relative)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise LandingRefused("not a regular file: refused")
        if info.st_size > max_bytes:
            raise LandingRefused(
                f"{info.st_size:,} bytes: larger than the {max_bytes:,}-byte bound"
            )
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise LandingRefused(f"grew past the {max_bytes:,}-byte bound while read")
    return data


def read_landed(landing: Path, file_row: dict, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a ledger row's landing file, as registered: refused as in
    ``read_landed_path``, and also when the content no longer has the registered sha256 (a
    file replaced in place is a new input: its new content has a ledger row of its own)."""
    data = read_landed_path(landing, file_row["path"], max_bytes)
    if content_sha256([data], file_row.get("user_id")) != file_row["sha256"]:
        raise LandingRefused(
            "replaced: the file's content changed after it was registered "
            "(the new content is ingested as an input of its own)",
        )
    return data


def _refused_digest(relative: PurePosixPath, info: os.stat_result) -> str:
    """Identity of an entry that is never read: its path and what it is, not its content."""
    return hashlib.sha256(
        f"refused\n{relative}\n{info.st_mode}\n{info.st_size}\n{info.st_mtime_ns}".encode()
    ).hexdigest()


def register_landing(
    landing: Path, layout: LakeLayout, now: datetime | None = None
) -> pl.DataFrame:
    """Append ledger rows for landing entries not seen before; return the new rows. Rows with
    a problem are quarantined here."""
    now = now or datetime.now(UTC)
    ledger = read_ledger(layout)
    known = ledger.select("path", "size_bytes", "mtime_ns")
    known_refused = ledger.filter(pl.col("problem").is_not_null()).select("path", "sha256")
    seen = {(r[0], r[1], r[2]) for r in known.iter_rows()}
    rows = []
    for entry in landing_entries(landing):
        info = entry.stat
        relative = PurePosixPath(entry.path.relative_to(landing).as_posix())
        key = (str(relative), info.st_size, info.st_mtime_ns)
        if key in seen:
            continue
        what = classify(relative)
        problem = entry.problem or what.problem
        try:
            digest = (
                _refused_digest(relative, info)
                if entry.problem
                else sha256_file(entry.path, owner=what.user_id)
            )
        except FileNotFoundError:  # removed between the listing and the hash
            continue
        rows.append(
            {
                "path": str(relative),
                "sha256": digest,
                "kind": what.kind,
                "user_id": what.user_id,
                "size_bytes": info.st_size,
                "mtime_ns": info.st_mtime_ns,
                "received_at": datetime.fromtimestamp(info.st_mtime_ns / 1e9, UTC),
                "registered_at": now,
                "problem": problem,
            }
        )
    new_rows = pl.DataFrame(rows, schema=LEDGER_SCHEMA)
    for row in new_rows.filter(pl.col("problem").is_not_null()).iter_rows(named=True):
        refusal = QuarantineBatch(row["path"], row["sha256"], LEDGER_STAGE)
        refusal.add(row["problem"])
        refusal.write(layout)
    # A path that was refused and now holds a usable file (a link replaced by the file, say):
    # its old refusal no longer describes landing.
    fixed = new_rows.filter(pl.col("problem").is_null())["path"].to_list()
    for sha256 in known_refused.filter(pl.col("path").is_in(fixed))["sha256"]:
        QuarantineBatch("", sha256, LEDGER_STAGE).write(layout)
    if new_rows.height:
        part = layout.ledger_dir / f"part-{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        write_parquet_atomic(new_rows, part)
    return new_rows


def current_files(layout: LakeLayout, kind: str) -> pl.DataFrame:
    """One row per distinct content of a kind: the first path it landed at. Rows with a
    problem are not inputs of any stage (they are quarantined at registration)."""
    return (
        read_ledger(layout)
        .filter(pl.col("kind") == kind, pl.col("problem").is_null())
        .sort("registered_at", "path")
        .unique(subset=["sha256"], keep="first", maintain_order=True)
    )
