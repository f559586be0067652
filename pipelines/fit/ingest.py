"""FIT files in the ledger → bronze Parquet parts per file and message type + quarantine."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipelines.fit.decode import FitDecoded, FitUnusable, decode_fit
from pipelines.lake.layout import LakeLayout
from pipelines.lake.quarantine import QuarantineBatch
from pipelines.lake.stage import mark_processed, pending_files, with_lineage, write_bronze

STAGE = "fit"
TABLES = (
    "fit_files",
    "fit_sessions",
    "fit_laps",
    "fit_records",
    "fit_events",
    "fit_record_fields",
    "fit_device_info",
    "fit_workouts",
    "fit_workout_steps",
    "fit_lengths",
    "fit_hrv",
)
# What an activityFiles ping said about the file (from its <name>.ping.json sidecar).
LINK_SCHEMA: dict[str, pl.DataType] = {"activity_id": pl.Int64(), "ping_summary_id": pl.String()}


def ping_link(landing: Path, relative: str) -> dict:
    sidecar = landing / f"{relative}.ping.json"
    link = {"activity_id": None, "ping_summary_id": None}
    if sidecar.exists():
        try:
            meta = json.loads(sidecar.read_text())
        except (ValueError, OSError):
            return link
        activity_id = meta.get("activityId")
        if isinstance(activity_id, int) and not isinstance(activity_id, bool):
            link["activity_id"] = activity_id
        elif isinstance(activity_id, str) and activity_id.isdigit():
            link["activity_id"] = int(activity_id)
        if isinstance(meta.get("summaryId"), str):
            link["ping_summary_id"] = meta["summaryId"]
    return link


@dataclass
class FitIngestReport:
    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    quarantined_files: int = 0
    damaged_files: int = 0  # decoded in part (CRC mismatch, truncated, …)
    decoders: dict[str, int] = field(default_factory=dict)  # fast path vs fitdecode fallback


def _decode_path(path: str) -> FitDecoded | str:
    """Worker: decode one file; a string is the reason it is unusable."""
    try:
        return decode_fit(Path(path).read_bytes())
    except FitUnusable as exc:
        return str(exc)


def fit_workers() -> int:
    """Decoding processes: WEARHOUSE_FIT_WORKERS, else one per core (at most 8)."""
    configured = os.environ.get("WEARHOUSE_FIT_WORKERS")
    if configured and configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, min(os.cpu_count() or 1, 8))


# Below this much input, starting worker processes (each imports Polars) costs more than the
# vectorized decoder needs for the whole batch (benchmarks/fit_ingest_parallel.py).
PARALLEL_MIN_BYTES = 32 << 20


def decode_all(
    paths: list[str], workers: int, min_bytes: int = PARALLEL_MIN_BYTES
) -> Iterator[FitDecoded | str]:
    """Decode in parallel processes for big batches, inline otherwise; results in order."""
    total = sum(Path(p).stat().st_size for p in paths)
    if workers <= 1 or len(paths) < 2 or total < min_bytes:
        yield from map(_decode_path, paths)
        return
    # spawn, not fork: the parent runs Polars' thread pool, which does not survive a fork.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(_decode_path, paths, chunksize=1)


def ingest_fit_files(
    landing: Path, layout: LakeLayout, workers: int | None = None
) -> FitIngestReport:
    report = FitIngestReport()
    pending = list(pending_files(layout, "fit", STAGE).iter_rows(named=True))
    decodable = [row for row in pending if not row["problem"]]
    # An explicit worker count (benchmarks, operators) is honoured even for small batches.
    results = dict(
        zip(
            (row["sha256"] for row in decodable),
            decode_all(
                [str(landing / row["path"]) for row in decodable],
                fit_workers() if workers is None else workers,
                PARALLEL_MIN_BYTES if workers is None else 0,
            ),
            strict=True,
        )
    )
    for file_row in pending:
        report.files += 1
        quarantine = QuarantineBatch(file_row["path"], file_row["sha256"], STAGE)
        decoded = results.get(file_row["sha256"], file_row["problem"])
        if not isinstance(decoded, FitDecoded):
            quarantine.add(decoded or "unusable")
            quarantine.write(layout)
            for table in TABLES:
                write_bronze(layout, table, file_row["sha256"], pl.DataFrame())
            mark_processed(layout, STAGE, file_row, "quarantined", 0)
            report.quarantined_files += 1
            continue
        total = 0
        link = ping_link(landing, file_row["path"])
        decoded.tables["fit_files"] = decoded.tables["fit_files"].with_columns(
            pl.lit(v, LINK_SCHEMA[k]).alias(k) for k, v in link.items()
        )
        for table, frame in decoded.tables.items():
            frame = frame.with_columns(pl.lit(file_row["user_id"], pl.String()).alias("user_id"))
            write_bronze(layout, table, file_row["sha256"], with_lineage(frame, file_row))
            report.rows[table] = report.rows.get(table, 0) + frame.height
            total += frame.height
        quarantine.write(layout)  # clears a stale record if the file once failed
        if decoded.integrity != "ok":
            report.damaged_files += 1
        report.decoders[decoded.decoder] = report.decoders.get(decoded.decoder, 0) + 1
        mark_processed(layout, STAGE, file_row, "ingested", total)
    return report
