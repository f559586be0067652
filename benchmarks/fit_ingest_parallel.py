"""Whole FIT ingest (ledger → decode → bronze Parquet), one process vs two, side by side.

Input: the shared FIT corpus (when ../shared/data/fit exists) plus generated 4 h activities
at 1 s (tests/fit_writer.py), copied into a fresh landing for every measured run. Reported:
MB/s and records/s of `ingest_fit_files` for each decoder (the vectorized default and plain
fitdecode) with 1 and 2 worker processes, and the ratios.

    python -m benchmarks.fit_ingest_parallel [--large 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pipelines.fit.decode import DECODER_ENV
from pipelines.fit.ingest import ingest_fit_files
from pipelines.lake.layout import LakeLayout
from pipelines.lake.ledger import register_landing
from tests.fit_writer import activity_file

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "fit"


def make_inputs(folder: Path, large: int) -> list[Path]:
    files = sorted(CORPUS.glob("*.fit")) if CORPUS.is_dir() else []
    for i in range(large):
        path = folder / f"generated-4h-{i}.fit"
        path.write_bytes(activity_file(4 * 3600, start=1_000_000_000 + i * 86_400, seed=i))
        files.append(path)
    return files


def one_run(files: list[Path], workers: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        target = root / "landing" / "fit" / "bench"
        target.mkdir(parents=True)
        for f in files:
            shutil.copy(f, target / f.name)
        layout = LakeLayout(root / "lake")
        register_landing(root / "landing", layout)
        start = time.perf_counter()
        report = ingest_fit_files(root / "landing", layout, workers=workers)
        return time.perf_counter() - start, report.rows.get("fit_records", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", type=int, default=4, help="generated 4 h files")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = make_inputs(Path(tmp), args.large)
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        print(
            f"{len(files)} files, {size_mb:.2f} MB (corpus: {CORPUS.is_dir()}, "
            f"generated 4 h files: {args.large}); median of {args.runs} runs\n"
        )
        print(
            f"{'decoder':<10} {'workers':>7} {'seconds':>9} {'MB/s':>8} {'records/s':>11} "
            f"{'vs 1 proc':>9}"
        )
        for decoder in ("fast", "fitdecode"):
            os.environ[DECODER_ENV] = decoder
            base = None
            for workers in (1, 2):
                times, records = [], 0
                for _ in range(args.runs):
                    seconds, records = one_run(files, workers)
                    times.append(seconds)
                median = statistics.median(times)
                base = base or median
                print(
                    f"{decoder:<10} {workers:>7} {median:>9.2f} {size_mb / median:>8.2f} "
                    f"{records / median:>11,.0f} {base / median:>8.2f}x"
                )
        os.environ.pop(DECODER_ENV, None)


if __name__ == "__main__":
    main()
