"""Interval metrics on inputs larger than memory: streamed over Parquet parts vs in memory.

What it measures
----------------
Input: the smart-recorded activities of ``benchmarks/interval_speed.py`` (gaps 1–9 s, a pause
each, laps every 1 km, all sample columns), written in parts of ``--part-activities``
activities (one Parquet file each, sessions grouped, as silver samples are) for each size in
``--sizes`` (activities; 3,600 samples each). Two methods, each in its own subprocess:

* ``in_memory``: read every part, ``interval_metrics(clean_samples(samples), laps)`` (how the
  pipeline calls it on one day range);
* ``streamed``: ``interval_metrics_files(parts, laps, out)`` (``pipelines/intervals/
  streaming.py``): record batches of whole sessions, results appended to one Parquet file.

Peak RSS is each child's rusage maxrss (whole process: imports, input, output). Bounded means
the streamed peak stays flat while the input grows; sizes above ``--in-memory-max`` activities
run streamed only (``--sizes ...,90000`` is 324 M samples, ~26 GB as a frame: more than this
machine's memory). Results are compared row for row with the in-memory method (distance,
timer and heart rate of every lap within 1e-9). (An address-space cap, ``RLIMIT_AS``, does not
work as a memory limit here: Polars and pyarrow reserve ~2.5 GB of virtual memory at rest.)

How to run (from the repository root)::

    .venv/bin/python -m benchmarks.interval_streaming [--sizes 1000,10000]
        [--part-activities 1000] [--in-memory-max 10000]
        [--out benchmarks/results/interval_streaming.json]

Measured: see benchmarks/RESULTS-intervals.md ("Larger than memory").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.memory import rss_mb

RESULTS = Path(__file__).resolve().parent / "results" / "interval_streaming.json"
SAMPLES_PER_ACTIVITY = 3600
METHODS = ("in_memory", "streamed")


def generate_parts(directory: Path, activities: int, part_activities: int, seed: int) -> dict:
    """Parts ``samples-<k>.parquet`` and one ``laps.parquet`` in ``directory``."""
    import polars as pl

    from benchmarks.interval_speed import generate

    laps = []
    for k, first in enumerate(range(0, activities, part_activities)):
        n = min(part_activities, activities - first)
        part = directory / f"part-{k}"
        part.mkdir()
        generate(n, SAMPLES_PER_ACTIVITY, seed + k, part, first_session=first)
        (part / "samples.parquet").rename(directory / f"samples-{k:04d}.parquet")
        laps.append(pl.read_parquet(part / "laps.parquet"))
        (part / "laps.parquet").unlink()
        part.rmdir()
    all_laps = pl.concat(laps)
    all_laps.write_parquet(directory / "laps.parquet")
    parts = sorted(directory.glob("samples-*.parquet"))
    return {
        "activities": activities,
        "samples": activities * SAMPLES_PER_ACTIVITY,
        "laps": all_laps.height,
        "parts": len(parts),
        "samples_parquet_mb": round(sum(p.stat().st_size for p in parts) / 2**20, 1),
    }


def worker(method: str, data: Path, out: Path) -> None:
    """Child process: run one method, print a JSON line."""
    import polars as pl

    from pipelines.intervals import clean_samples, interval_metrics
    from pipelines.intervals.streaming import interval_metrics_files

    parts = sorted(data.glob("samples-*.parquet"))
    laps = pl.scan_parquet(data / "laps.parquet")
    started = time.perf_counter()
    report: dict = {"method": method}
    if method == "in_memory":
        samples = pl.scan_parquet(parts)
        rows = interval_metrics(clean_samples(samples), laps).collect()
        rows.write_parquet(out)
        report["input_frame_mb"] = round(pl.read_parquet(parts[0]).estimated_size("mb"), 1)
    else:
        stats = interval_metrics_files(parts, laps, out)
        report |= {"batches": stats.batches, "largest_batch_rows": stats.largest_batch}
    report["seconds"] = time.perf_counter() - started
    report["peak_virtual_mb"] = rss_mb("VmPeak")
    print(json.dumps(report))


def run_child(method: str, data: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.interval_streaming", "--worker", method]
    cmd += ["--data", str(data), "--result", str(out)]
    root = Path(__file__).resolve().parent.parent
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    code = os.waitstatus_to_exitcode(status)
    report = {"method": method, "exit_code": code}
    if code == 0:
        report |= json.loads(stdout.decode().strip().splitlines()[-1])
    else:
        report["error"] = stderr.decode(errors="replace").strip().splitlines()[-1:]
    report["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    report["wall_s"] = round(time.perf_counter() - started, 2)
    return report


def same_rows(a: Path, b: Path) -> float:
    """Largest |difference| of lap distance and timer between two result files."""
    import polars as pl

    key = ["session_id", "kind", "interval_index"]
    x = pl.read_parquet(a).sort(key)
    y = pl.read_parquet(b).sort(key)
    if x.select(key).to_dicts() != y.select(key).to_dicts():
        return float("inf")
    return max(float((x[c] - y[c]).abs().max() or 0.0) for c in ("distance_m", "timer_s", "avg_hr"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="activities per size")
    parser.add_argument("--part-activities", type=int, default=1000)
    parser.add_argument(
        "--in-memory-max", type=int, default=10000, help="largest size run in memory too"
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        size = generate_parts(args.data, args.generate, args.part_activities, args.seed)
        print(json.dumps(size))
        return 0
    if args.worker:
        worker(args.worker, args.data, args.result)
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="interval_streaming_") as tmp:
        for activities in sizes:
            data = Path(tmp) / f"n{activities}"
            data.mkdir()
            t0 = time.perf_counter()
            # In a child: a child's peak RSS starts from its parent's RSS at fork time.
            command = [sys.executable, "-m", "benchmarks.interval_streaming", "--data", str(data)]
            command += ["--generate", str(activities), "--seed", str(args.seed)]
            command += ["--part-activities", str(args.part_activities)]
            generated = subprocess.run(
                command,
                cwd=Path(__file__).resolve().parent.parent,
                capture_output=True,
                check=True,
                text=True,
            )
            size = json.loads(generated.stdout.strip().splitlines()[-1])
            print(
                f"input: {size['samples']:,} samples ({activities:,} activities, "
                f"{size['laps']:,} laps) in {size['parts']} parts, "
                f"{size['samples_parquet_mb']} MB Parquet, generated in "
                f"{time.perf_counter() - t0:.0f} s",
                flush=True,
            )
            methods = METHODS if activities <= args.in_memory_max else ("streamed",)
            outputs = {}
            for method in methods:
                out = data / f"out-{method}.parquet"
                r = run_child(method, data, out) | size
                if r["exit_code"] == 0:
                    outputs[method] = out
                    r["samples_per_s"] = round(size["samples"] / r["seconds"])
                runs.append(r)
                done = (
                    f"{r['seconds']:7.2f} s  {r['samples_per_s'] / 1e6:5.2f} M samples/s"
                    if r["exit_code"] == 0
                    else f"failed: {' '.join(r['error'])[:70]}"
                )
                print(f"  {method:<10} {done}  peak RSS {r['peak_rss_mb']:7.0f} MB", flush=True)
            if len(outputs) == 2:
                diff = same_rows(outputs["streamed"], outputs["in_memory"])
                runs[-1]["max_abs_diff_vs_in_memory"] = diff
                print(f"  streamed vs in_memory: max |diff| {diff:.2e}", flush=True)
                if diff > 1e-9:
                    raise SystemExit(f"streamed differs from in_memory: {diff}")
            for path in data.iterdir():  # free the disk before the next size
                path.unlink()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "interval_streaming",
                "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "config": vars(args) | {"out": str(args.out), "machine": platform.machine()},
                "runs": runs,
            },
            indent=1,
            default=str,
        )
    )
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
