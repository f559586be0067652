"""Interval metrics over sample files larger than memory: one pass, whole sessions at a time.

:func:`interval_metrics` takes collected frames; its results are exact per session, so any
partition by session gives the same rows. :func:`interval_metrics_files` reads session-grouped
Parquet samples (every session one contiguous run of rows, as silver samples are; times within
a session in any order) in record batches, holds back the last session of each batch until
the next one completes it, measures each batch of whole sessions with :func:`clean_samples`
and :func:`interval_metrics`, and appends the rows to one Parquet file written under a
temporary name and renamed when complete (a crash leaves no half-written output). Memory is
bounded by ``batch_rows`` (plus the longest session), not by the input; intervals are held in
memory (one row per lap or step: ~1/100 of the samples).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.intervals.alignment import SAMPLE_COLUMNS, clean_samples, interval_metrics

# Samples per batch of whole sessions: peak memory grows with the batch (copies while cleaning
# and measuring), speed stops growing well before; measured in benchmarks/RESULTS-intervals.md.
BATCH_ROWS = 1 << 19


@dataclass
class StreamedMeasurement:
    samples: int  # sample rows read
    sessions: int  # sessions measured from samples
    batches: int  # batches of whole sessions measured
    largest_batch: int  # rows of the largest batch (the memory bound)
    intervals: int  # rows written (every interval, with or without samples)


class SessionsNotGrouped(ValueError):
    """A session's samples are not one contiguous run of rows."""


def interval_metrics_files(
    samples: Sequence[Path],
    intervals: pl.LazyFrame | pl.DataFrame,
    out: Path,
    *,
    batch_rows: int = BATCH_ROWS,
    gap_threshold_s: float = 10.0,
) -> StreamedMeasurement:
    """:func:`interval_metrics` of ``intervals`` over the samples in the Parquet ``samples``
    files (read in order, grouped by session), written to ``out``; rows in batch order.

    Raises :class:`SessionsNotGrouped` naming the file and session when a session's rows come
    back after other sessions (sort such input by session first)."""
    wanted = intervals.lazy().collect()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    stats = StreamedMeasurement(0, 0, 0, 0, 0)
    measured: set[str] = set()
    writer: pq.ParquetWriter | None = None

    def measure(batch: pl.DataFrame, source: Path) -> None:
        sid = batch["session_id"]
        ids = sid.filter(sid.ne_missing(sid.shift(1)))  # one per run of rows
        for name in ids.cast(pl.String).to_list():  # per session, not per sample
            if name in measured:
                raise SessionsNotGrouped(
                    f"{source}: samples of session {name!r} come after other sessions' "
                    "samples; interval_metrics_files needs each session's samples in one run "
                    "of rows (sort by session first)"
                )
            measured.add(name)
        stats.sessions += len(ids)
        stats.batches += 1
        stats.largest_batch = max(stats.largest_batch, batch.height)
        spans = wanted.filter(pl.col("session_id").is_in(ids.implode()))
        write(interval_metrics(clean_samples(batch.lazy()), spans.lazy(), gap_threshold_s))

    def write(rows: pl.LazyFrame) -> None:
        nonlocal writer
        table = rows.collect().to_arrow()
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table.cast(writer.schema))
        stats.intervals += table.num_rows

    try:
        carry: pl.DataFrame | None = None
        source = Path()
        for source in map(Path, samples):
            for batch in _batches(source, batch_rows):
                stats.samples += batch.height
                pending = batch if carry is None else pl.concat([carry, batch], how="vertical")
                # The last session may go on in the next batch (or file): hold it back.
                tail = _last_run_start(pending["session_id"])
                if tail > 0:
                    measure(pending.slice(0, tail), source)
                carry = pending.slice(tail)
        if carry is not None and carry.height:
            measure(carry, source)
        # Intervals of sessions without samples still get their row (flagged out of range).
        rest = wanted.filter(~pl.col("session_id").cast(pl.String).is_in(list(measured)))
        if rest.height or writer is None:
            empty = pl.DataFrame(
                schema={"session_id": wanted.schema["session_id"], "t_s": pl.Float64}
            )
            write(interval_metrics(empty.lazy(), rest.lazy(), gap_threshold_s))
        assert writer is not None
        writer.close()
        writer = None
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return stats


def _batches(path: Path, batch_rows: int):
    """Record batches of ``path`` as Polars frames of every sample column (session_id as
    text, the rest Float64, null where the file has no such column), so that files written
    with other columns or types continue each other."""
    parquet = pq.ParquetFile(path)
    columns = [c for c in SAMPLE_COLUMNS if c in parquet.schema_arrow.names]
    if "session_id" not in columns or "t_s" not in columns:
        raise ValueError(f"{path}: samples need session_id and t_s columns, found {columns}")
    uniform = [pl.col("session_id").cast(pl.String)] + [
        (pl.col(c) if c in columns else pl.lit(None)).cast(pl.Float64).alias(c)
        for c in SAMPLE_COLUMNS[1:]
    ]
    for record_batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        yield pl.from_arrow(pa.Table.from_batches([record_batch])).select(uniform)


def _last_run_start(session_id: pl.Series) -> int:
    """Row where the last run of equal session ids starts."""
    changed = session_id.ne_missing(session_id.shift(1)).to_numpy()
    return int(np.flatnonzero(changed)[-1]) if len(changed) else 0
