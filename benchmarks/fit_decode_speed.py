"""FIT decoding speed: fitdecode (``decode_fit``) against the vectorized record path.

Run from the repository root::

    python -m benchmarks.fit_decode_speed [--runs 5] [--records 14400] [--no-corpus]

Measures, side by side in one run, medians of ``--runs`` runs:

* ``decode_fit``        the existing path: fitdecode, field by field, every message;
* ``records fast``      ``scan_records``: the records frame only, vectorized;
* ``decode_fit_fast``   the whole ``FitDecoded`` (records vectorized, the rest via fitdecode
                        on the cut-down rest stream), identical to ``decode_fit``;
* ``fitfast``           optional external anchor (Rust, ``pip install fitfast``): its
                        ``records()`` columns, not the same semantics, skipped if missing.

on a generated 4 h, 1 s ride (timestamp, position, distance, speed, heart rate, cadence,
altitude, power, temperature; laps every 5 min), and, when /work/shared/data/fit (or
$WEARHOUSE_FIT_CORPUS) exists, on that whole corpus (fallbacks to fitdecode included and
counted). Outputs are checked to be identical to ``decode_fit`` before anything is timed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from polars.testing import assert_frame_equal

from pipelines.fit import decode as decode_module
from pipelines.fit.decode import FitUnusable
from pipelines.fit.fast_records import decode_fit_fast, decode_records_fast, scan_records
from tests.fit_writer import activity_file

CORPUS = Path(os.environ.get("WEARHOUSE_FIT_CORPUS", "/work/shared/data/fit"))
# plain fitdecode, also once decode_fit delegates to the fast path (see fast_records)
decode_fit = getattr(decode_module, "decode_fit_fitdecode", decode_module.decode_fit)

try:  # optional external anchor, never a runtime dependency
    import fitfast
except ImportError:  # pragma: no cover - depends on the environment
    fitfast = None


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(title: str, rows: list[tuple[str, float, str]], n_records: int, n_bytes: int) -> None:
    base = rows[0][1]
    print(f"\n{title}")
    print(f"{'method':<18}{'median s':>10}{'records/s':>13}{'MB/s':>9}{'vs decode_fit':>15}  note")
    for name, seconds, note in rows:
        print(
            f"{name:<18}{seconds:>10.4f}{n_records / seconds:>13,.0f}"
            f"{n_bytes / seconds / 1e6:>9.2f}{base / seconds:>14.1f}x  {note}"
        )


def large_file(n_records: int, runs: int) -> None:
    raw = activity_file(n_records)
    ref = decode_fit(raw)
    assert_frame_equal(scan_records(raw).records, ref.records, check_exact=True)
    whole = decode_fit_fast(raw)
    for name, frame in ref.tables.items():
        assert_frame_equal(whole.tables[name], frame, check_exact=True)
    rows = [
        ("decode_fit", median_seconds(lambda: decode_fit(raw), runs), "fitdecode"),
        ("records fast", median_seconds(lambda: scan_records(raw), runs), "identical records"),
        ("decode_fit_fast", median_seconds(lambda: decode_fit_fast(raw), runs), "identical all"),
    ]
    if fitfast is not None:
        rows.append(("fitfast", median_seconds(lambda: fitfast.records(raw), runs), "anchor"))
    hours = n_records / 3600
    title = (
        f"Generated {hours:.1f} h ride at 1 s: {ref.records.height:,} records, "
        f"{len(raw) / 1e6:.2f} MB, medians of {runs} runs"
    )
    table(title, rows, ref.records.height, len(raw))


def corpus(runs: int) -> None:
    files = sorted(CORPUS.glob("*.fit"))
    blobs = [p.read_bytes() for p in files]
    n_bytes = sum(len(b) for b in blobs)
    references = []
    for raw in blobs:
        try:
            references.append(decode_fit(raw))
        except FitUnusable:
            references.append(None)
    n_records = sum(r.records.height for r in references if r is not None)

    fallbacks = {"records": 0, "whole": 0, "fitfast": 0}

    def all_decode_fit() -> None:
        for raw in blobs:
            with contextlib.suppress(FitUnusable):
                decode_fit(raw)

    def all_records_fast() -> None:
        fallbacks["records"] = 0
        for raw in blobs:
            if decode_records_fast(raw) is None:
                fallbacks["records"] += 1
                with contextlib.suppress(FitUnusable):
                    decode_fit(raw)

    def all_decode_fit_fast() -> None:
        fallbacks["whole"] = 0
        for raw in blobs:

            def slow(data: bytes, raw: bytes = raw):
                if data is raw:
                    fallbacks["whole"] += 1
                return decode_fit(data)

            with contextlib.suppress(FitUnusable):
                decode_fit_fast(raw, slow)

    def all_fitfast() -> None:
        fallbacks["fitfast"] = 0
        for raw in blobs:
            try:
                fitfast.records(raw)
            except Exception:  # broken files: fitfast refuses them
                fallbacks["fitfast"] += 1

    rows = [("decode_fit", median_seconds(all_decode_fit, runs), "fitdecode")]
    seconds = median_seconds(all_records_fast, runs)
    rows.append(("records fast", seconds, f"{fallbacks['records']} files via fitdecode"))
    seconds = median_seconds(all_decode_fit_fast, runs)
    rows.append(("decode_fit_fast", seconds, f"{fallbacks['whole']} files whole via fitdecode"))
    if fitfast is not None:
        seconds = median_seconds(all_fitfast, runs)
        rows.append(("fitfast", seconds, f"{fallbacks['fitfast']} files refused"))
    title = (
        f"Corpus {CORPUS}: {len(files)} files, {n_records:,} records, "
        f"{n_bytes / 1e6:.2f} MB, medians of {runs} runs"
    )
    table(title, rows, n_records, n_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--records", type=int, default=14_400)
    parser.add_argument("--no-corpus", action="store_true")
    args = parser.parse_args()
    large_file(args.records, args.runs)
    if not args.no_corpus and CORPUS.is_dir():
        corpus(args.runs)
    if fitfast is None:
        print("\n(fitfast not installed: external anchor skipped)")


if __name__ == "__main__":
    main()
