"""Erasure of a deregistered user from every layer, leaving one audit row.

Garmin's `deregistrations` notice means the user disconnected: their data must go from
landing (their FIT folders deleted, mixed-user bodies rewritten without their items), the
ledger, bronze, quarantine and every derived layer (rebuilt afterwards from what is left).
The audit keeps only sha256(user_id), when, and counts of what was erased; later deliveries
for that hash dated before the deregistration are dropped and counted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from pipelines.lake.io import parquet_parts, scan_parts, write_parquet_atomic
from pipelines.lake.layout import LakeLayout
from pipelines.lake.ledger import is_safe_id, landing_files, read_ledger

AUDIT_SCHEMA: dict[str, pl.DataType] = {
    "user_id_sha256": pl.String(),
    "deregistered_at": pl.Datetime("us", "UTC"),
    "erased_at": pl.Datetime("us", "UTC"),
    "erased": pl.String(),  # JSON counts of what was removed, per place
}


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def audit_path(layout: LakeLayout) -> Path:
    return layout.root / "audit" / "erasures.parquet"


def read_audit(layout: LakeLayout) -> pl.DataFrame:
    path = audit_path(layout)
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=AUDIT_SCHEMA)


def erased_users(layout: LakeLayout) -> dict[str, float]:
    """sha256(user_id) → deregistration instant (epoch s), latest per user."""
    audit = read_audit(layout)
    return {
        row["user_id_sha256"]: row["deregistered_at"].timestamp()
        for row in audit.sort("deregistered_at").iter_rows(named=True)
    }


def pending_deregistrations(layout: LakeLayout) -> pl.DataFrame:
    """Users with a deregistration notice in bronze (erasure removes the notice itself)."""
    notices = scan_parts(
        layout.bronze_dir("garmin_deregistrations"),
        {"user_id": pl.String(), "received_at": pl.Datetime("us", "UTC")},
    )
    return (
        notices.group_by("user_id")
        .agg(pl.col("received_at").max().alias("deregistered_at"))
        .sort("user_id")
        .collect()
    )


@dataclass
class ErasureReport:
    users: int = 0
    erased: dict[str, int] = field(default_factory=dict)

    def add(self, place: str, n: int) -> None:
        if n:
            self.erased[place] = self.erased.get(place, 0) + n


def rewrite_body(path: Path, drop: Callable[[object], bool]) -> int:
    """Remove the items ``drop`` selects from a JSON push body, atomically; delete the file
    when nothing else is left. Returns how many items were removed."""
    raw = path.read_bytes()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return 0  # not JSON: nothing item-shaped to remove (it sits in quarantine)
    if not (isinstance(body, dict) and all(isinstance(v, list) for v in body.values())):
        return 0
    kept = {key: [item for item in items if not drop(item)] for key, items in body.items()}
    removed = sum(len(body[key]) - len(items) for key, items in kept.items())
    if not removed:
        return 0
    kept = {key: items for key, items in kept.items() if items}
    if not kept:
        path.unlink()
    else:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(kept))
        os.replace(tmp, path)
    return removed


def _erase_landing(landing: Path, user_id: str, report: ErasureReport) -> tuple[set[str], set[str]]:
    """Return (relative paths deleted, relative paths rewritten)."""
    gone: set[str] = set()
    rewritten: set[str] = set()
    for top in ("fit", "plans"):
        folder = landing / top / user_id
        if is_safe_id(user_id) and folder.is_dir():
            files = landing_files(folder)
            gone.update(path.relative_to(landing).as_posix() for path in files)
            shutil.rmtree(folder)
            report.add(f"landing/{top} files", len(files))
    needle = json.dumps(user_id).encode()

    def of_user(item: object) -> bool:
        return isinstance(item, dict) and item.get("userId") == user_id

    for path in landing_files(landing / "garmin"):
        if path.suffix.lower() != ".json" or needle not in path.read_bytes():
            continue
        relative = path.relative_to(landing).as_posix()
        removed = rewrite_body(path, of_user)
        if not removed:
            # Mentions the user but cannot be split into items: it cannot be kept.
            path.unlink()
            removed = 1
        report.add("landing/garmin items", removed)
        (rewritten if path.exists() else gone).add(relative)
    return gone, rewritten


def _rewrite_parts(directory: Path, keep: pl.Expr, place: str, report: ErasureReport) -> None:
    for part in parquet_parts(directory):
        frame = pl.read_parquet(part)
        kept = frame.filter(keep)
        if kept.height == frame.height:
            continue
        report.add(place, frame.height - kept.height)
        if kept.height:
            write_parquet_atomic(kept, part)
        else:
            part.unlink()


def forget_paths(layout: LakeLayout, gone: set[str], user_id: str | None = None) -> int:
    """Rewrite the ledger without rows for deleted files (or of ``user_id``)."""
    ledger = read_ledger(layout)
    keep = ~pl.col("path").is_in(sorted(gone))
    if user_id is not None:
        keep &= pl.col("user_id").ne_missing(user_id)
    kept = ledger.filter(keep)
    if kept.height == ledger.height:
        return 0
    parts = parquet_parts(layout.ledger_dir)
    write_parquet_atomic(kept, layout.ledger_dir / f"part-rewritten-{uuid.uuid4().hex}.parquet")
    for part in parts:
        part.unlink()
    return ledger.height - kept.height


def refresh_ledger_stat(layout: LakeLayout, landing: Path, relative: str) -> None:
    """A body rewritten by erasure is the same delivery: record its new size/mtime so the
    next run does not take it for a new file (its sha256 stays the arrival hash)."""
    ledger = read_ledger(layout).filter(pl.col("path") == relative)
    path = landing / relative
    if not ledger.height or not path.exists():
        return
    stat = path.stat()
    row = ledger.tail(1).with_columns(
        pl.lit(stat.st_size, pl.Int64).alias("size_bytes"),
        pl.lit(stat.st_mtime_ns, pl.Int64).alias("mtime_ns"),
    )
    write_parquet_atomic(row, layout.ledger_dir / f"part-refresh-{uuid.uuid4().hex}.parquet")


def erase_user(
    landing: Path, layout: LakeLayout, user_id: str, deregistered_at: datetime
) -> ErasureReport:
    report = ErasureReport(users=1)
    gone, rewritten = _erase_landing(landing, user_id, report)
    report.add("ledger rows", forget_paths(layout, gone, user_id))
    for relative in sorted(rewritten):
        refresh_ledger_stat(layout, landing, relative)

    bronze_root = layout.root / "bronze"
    tables = sorted(p for p in bronze_root.iterdir() if p.is_dir()) if bronze_root.exists() else []
    for table_dir in tables:
        if table_dir.name != "_processed":
            _rewrite_parts(
                table_dir,
                pl.col("user_id").ne_missing(user_id),
                f"bronze/{table_dir.name}",
                report,
            )
    # Ping fetch state names the user (and the landed paths).
    _rewrite_parts(
        layout.root / "raw" / "ping_state",
        pl.col("user_id").ne_missing(user_id),
        "raw/ping_state",
        report,
    )
    for markers, column in (
        (bronze_root / "_processed", "path"),
        (layout.quarantine_dir, "input_path"),
    ):
        stages = sorted(p for p in markers.iterdir() if p.is_dir()) if markers.exists() else []
        for stage in stages:
            keep = _keep_paths(column, user_id, gone)
            _rewrite_parts(stage, keep, f"{markers.name}/{stage.name}", report)

    # Silver's indexes and pending change logs describe the old bronze (and name the user):
    # dropping them makes every silver stage and the warehouse rebuild in full.
    for state in ("_index", "_changes"):
        shutil.rmtree(layout.silver_state_dir(state), ignore_errors=True)

    audit = pl.concat(
        [
            read_audit(layout),
            pl.DataFrame(
                [
                    {
                        "user_id_sha256": user_hash(user_id),
                        "deregistered_at": deregistered_at,
                        "erased_at": datetime.now(UTC),
                        "erased": json.dumps(report.erased, sort_keys=True),
                    }
                ],
                schema=AUDIT_SCHEMA,
            ),
        ]
    )
    write_parquet_atomic(audit, audit_path(layout))
    return report


def _keep_paths(column: str, user_id: str, gone: set[str]) -> pl.Expr:
    path = pl.col(column)
    in_user_folder = path.str.starts_with(f"fit/{user_id}/") | path.str.starts_with(
        f"plans/{user_id}/"
    )
    return ~(in_user_folder | path.is_in(sorted(gone)))


def erase_deregistered(landing: Path, layout: LakeLayout) -> ErasureReport:
    """Erase every user with a pending deregistration notice."""
    total = ErasureReport()
    for row in pending_deregistrations(layout).iter_rows(named=True):
        report = erase_user(landing, layout, row["user_id"], row["deregistered_at"])
        total.users += 1
        for place, n in report.erased.items():
            total.add(place, n)
    return total
