"""The raw ledger: every landing file recorded once, by content hash.

Landing is immutable. A run lists it, hashes only files it has not seen at the same
(path, size, mtime), and appends their rows as one new ledger part. Re-running over the same
landing therefore hashes nothing and appends nothing.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import polars as pl

from pipelines.lake.io import scan_parts, write_parquet_atomic
from pipelines.lake.layout import LakeLayout

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


def sha256_file(path: Path, chunk_size: int = 1 << 20, owner: str | None = None) -> str:
    """sha256 of the file's bytes (preceded by ``owner`` and a newline, when given)."""
    digest = hashlib.sha256()
    if owner is not None:
        digest.update(f"{owner}\n".encode())
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_ledger(layout: LakeLayout) -> pl.DataFrame:
    return scan_parts(layout.ledger_dir, LEDGER_SCHEMA).collect()


def landing_files(landing: Path) -> list[Path]:
    if not landing.exists():
        return []
    return sorted(
        p
        for p in landing.rglob("*")
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(_IGNORED_SUFFIXES)
    )


def register_landing(
    landing: Path, layout: LakeLayout, now: datetime | None = None
) -> pl.DataFrame:
    """Append ledger rows for landing files not seen before; return the new rows."""
    now = now or datetime.now(UTC)
    known = read_ledger(layout).select("path", "size_bytes", "mtime_ns")
    seen = {(r[0], r[1], r[2]) for r in known.iter_rows()}
    rows = []
    for path in landing_files(landing):
        stat = path.stat()
        relative = PurePosixPath(path.relative_to(landing).as_posix())
        key = (str(relative), stat.st_size, stat.st_mtime_ns)
        if key in seen:
            continue
        what = classify(relative)
        rows.append(
            {
                "path": str(relative),
                "sha256": sha256_file(path, owner=what.user_id),
                "kind": what.kind,
                "user_id": what.user_id,
                "size_bytes": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "received_at": datetime.fromtimestamp(stat.st_mtime_ns / 1e9, UTC),
                "registered_at": now,
                "problem": what.problem,
            }
        )
    new_rows = pl.DataFrame(rows, schema=LEDGER_SCHEMA)
    if new_rows.height:
        part = layout.ledger_dir / f"part-{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        write_parquet_atomic(new_rows, part)
    return new_rows


def current_files(layout: LakeLayout, kind: str) -> pl.DataFrame:
    """One row per distinct content of a kind: the first path it landed at."""
    return (
        read_ledger(layout)
        .filter(pl.col("kind") == kind)
        .sort("registered_at", "path")
        .unique(subset=["sha256"], keep="first", maintain_order=True)
    )
