"""FIT files in the ledger → bronze Parquet parts per file and message type + quarantine."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipelines.fit.decode import MAX_FIT_BYTES, FitDecoded, FitUnusable, decode_fit
from pipelines.lake.layout import LakeLayout
from pipelines.lake.ledger import read_landed, read_landed_path
from pipelines.lake.quarantine import QuarantineBatch
from pipelines.lake.stage import (
    failure_reason,
    mark_processed,
    pending_files,
    refuse_input,
    with_lineage,
    write_bronze,
)

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


# A ping sidecar is a few hundred bytes of JSON.
MAX_SIDECAR_BYTES = 64 << 10


def ping_link(landing: Path, relative: str) -> dict:
    link = {"activity_id": None, "ping_summary_id": None}
    try:
        meta = json.loads(read_landed_path(landing, f"{relative}.ping.json", MAX_SIDECAR_BYTES))
    except (ValueError, OSError, RecursionError):  # absent, refused or not JSON: no link
        return link
    if not isinstance(meta, dict):
        return link
    activity_id = meta.get("activityId")
    if isinstance(activity_id, int) and not isinstance(activity_id, bool):
        link["activity_id"] = activity_id if -(2**63) <= activity_id < 2**63 else None
    elif isinstance(activity_id, str) and activity_id.isascii() and activity_id.isdigit():
        link["activity_id"] = int(activity_id) if len(activity_id) < 19 else None
    if isinstance(meta.get("summaryId"), str):
        link["ping_summary_id"] = meta["summaryId"].encode("utf-8", "replace").decode()
    return link


@dataclass
class FitIngestReport:
    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    quarantined_files: int = 0
    damaged_files: int = 0  # decoded in part (CRC mismatch, truncated, …)
    decoders: dict[str, int] = field(default_factory=dict)  # fast path vs fitdecode fallback


def decode_input(landing: Path, file_row: dict) -> FitDecoded | str:
    """Decode one landed file; a string is why it is unusable. Whatever goes wrong with this
    input (a decoder bug included) is this input's reason, never an exception."""
    try:
        return decode_fit(read_landed(landing, file_row, MAX_FIT_BYTES))
    except FitUnusable as exc:
        return str(exc)
    except Exception as exc:
        return failure_reason(exc)


def _decode_alone(landing: Path, file_row: dict) -> FitDecoded | str:
    """Decode in a process of its own: the input that kills its process is refused alone."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            return pool.submit(decode_input, landing, file_row).result()
        except BrokenProcessPool:
            return "the decoder process died on this file (killed, or out of memory)"


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
    landing: Path, rows: list[dict], workers: int, min_bytes: int = PARALLEL_MIN_BYTES
) -> Iterator[FitDecoded | str]:
    """Decode in parallel processes for big batches, inline otherwise; results in order.
    When a worker process dies, every file not yet answered is decoded again alone, so the
    file that kills a process is refused and the others land."""
    total = sum(row["size_bytes"] or 0 for row in rows)
    if workers <= 1 or len(rows) < 2 or total < min_bytes:
        for row in rows:
            yield decode_input(landing, row)
        return
    # spawn, not fork: the parent runs Polars' thread pool, which does not survive a fork.
    context = multiprocessing.get_context("spawn")
    done = 0
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(decode_input, landing, row) for row in rows]
            for future in futures:
                result = future.result()
                done += 1
                yield result
    except BrokenProcessPool:
        for row in rows[done:]:
            yield _decode_alone(landing, row)


def ingest_fit_files(
    landing: Path, layout: LakeLayout, workers: int | None = None
) -> FitIngestReport:
    report = FitIngestReport()
    pending = list(pending_files(layout, "fit", STAGE).iter_rows(named=True))
    # An explicit worker count (benchmarks, operators) is honoured even for small batches.
    results = decode_all(
        landing,
        pending,
        fit_workers() if workers is None else workers,
        PARALLEL_MIN_BYTES if workers is None else 0,
    )
    for file_row, decoded in zip(pending, results, strict=True):
        report.files += 1
        tables = None
        if isinstance(decoded, FitDecoded):
            try:
                tables = _labelled_tables(landing, file_row, decoded)
            except Exception as exc:  # one input's failure is that input's alone
                decoded = failure_reason(exc)
        if tables is None:
            refuse_input(layout, STAGE, file_row, decoded or "unusable", TABLES)
            report.quarantined_files += 1
            continue
        total = 0
        for table, frame in tables.items():
            write_bronze(layout, table, file_row["sha256"], frame)
            report.rows[table] = report.rows.get(table, 0) + frame.height
            total += frame.height
        # An empty batch clears the record of an earlier failure of the same input.
        QuarantineBatch(file_row["path"], file_row["sha256"], STAGE).write(layout)
        if decoded.integrity != "ok":
            report.damaged_files += 1
        report.decoders[decoded.decoder] = report.decoders.get(decoded.decoder, 0) + 1
        mark_processed(layout, STAGE, file_row, "ingested", total)
    return report


def _labelled_tables(landing: Path, file_row: dict, decoded: FitDecoded) -> dict[str, pl.DataFrame]:
    """The decoded tables with the ping link, the user and the lineage of the input."""
    link = ping_link(landing, file_row["path"])
    tables = dict(decoded.tables)
    tables["fit_files"] = tables["fit_files"].with_columns(
        pl.lit(v, LINK_SCHEMA[k]).alias(k) for k, v in link.items()
    )
    return {
        table: with_lineage(
            frame.with_columns(pl.lit(file_row["user_id"], pl.String()).alias("user_id")),
            file_row,
        )
        for table, frame in tables.items()
    }
