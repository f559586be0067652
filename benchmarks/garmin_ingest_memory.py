"""Peak memory of parsing one large Garmin push body and writing its bronze tables.

What it measures
----------------
One generated body per kind (``--mb``, default 200 MB, 1 MB = 2**20 bytes; compact JSON as
Garmin sends it; deterministic):

* ``dailies``: users' days with 5,760 heart-rate samples each (about 63 KB per item; the map
  explodes into ``garmin_timeseries``, about ten times the JSON in memory as rows);
* ``activityDetails``: 5-hour smart-recorded runs (about 3,600 samples per item);
* ``epochs``: 15-minute wellness epochs (about 400 bytes per item, one row each), at most
  ``push.MAX_ITEMS`` of them: the body of many small items.

Each body is parsed in its own child process, which reads the file, resets its peak-RSS mark
(``/proc/self/clear_refs``) and then runs one mode:

* ``tables``: ``parse_push(raw).tables()``, then ``with_lineage`` and ``write_parquet`` per
  table: what ``garmin.ingest`` does with a parsed body;
* ``stream``: ``parse_push(raw).lazy_tables()``, then ``with_lineage`` and ``sink_parquet``
  per table: each table is written from parts of ``push.PART_ROWS`` rows, never whole.

Peak RSS (VmHWM) includes the interpreter, Polars and the body's own bytes (read before the
mark is reset, so counted); ``above imports`` subtracts the RSS after imports. The bound is
stated against the body size.

``--pythonpath DIR`` runs the children on another checkout of ``pipelines`` (e.g. an older
commit unpacked with ``git archive``), for before/after numbers.

How to run (from the repository root; about 2 minutes per 200 MB body and mode)::

    .venv/bin/python -m benchmarks.garmin_ingest_memory [--mb 200] [--kinds dailies,activityDetails]
        [--modes tables,stream] [--pythonpath DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 2**20
EPOCH0 = 1_767_225_600  # 2026-01-01T00:00:00Z
KINDS = ("dailies", "activityDetails", "epochs")
MODES = ("tables", "stream")
ROOT = Path(__file__).resolve().parent.parent


def generate(kind: str, mb: float, path: Path) -> dict:
    """Write one ``kind`` body of at least ``mb`` MB to ``path``, an item at a time."""
    import numpy as np

    from pipelines.garmin.generate import activity_details, daily
    from pipelines.garmin.push import MAX_ITEMS

    rng = np.random.default_rng(18)
    target, size, k = int(mb * MB), 0, 0
    with path.open("wb") as fh:
        fh.write(b'{"%s":[' % kind.encode())
        while size < target and not (kind == "epochs" and k == MAX_ITEMS):
            user = f"user-{k % 50:03d}"
            if kind == "epochs":
                steps = int(rng.integers(0, 2_000))
                item = {
                    "userId": user,
                    "summaryId": f"x{user}-{EPOCH0 + 900 * k:x}",
                    "activityType": "WALKING",
                    "activeKilocalories": round(steps * 0.04, 1),
                    "steps": steps,
                    "distanceInMeters": round(steps * 0.78, 2),
                    "durationInSeconds": 900,
                    "activeTimeInSeconds": int(steps * 0.4),
                    "startTimeInSeconds": EPOCH0 + 900 * (k // 50),
                    "startTimeOffsetInSeconds": 3600,
                    "met": round(1 + steps / 1000, 3),
                    "intensity": "ACTIVE" if steps > 500 else "SEDENTARY",
                    "meanMotionIntensity": round(float(rng.random()) * 4, 3),
                    "maxMotionIntensity": round(float(rng.random()) * 7, 3),
                }
            elif kind == "dailies":
                item = daily(user, EPOCH0 + 86_400 * (k // 50), rng)
            else:
                start = EPOCH0 + 86_400 * k
                item = activity_details(user, 10**10 + k, start, rng, duration_s=18_000)
            data = json.dumps(item, separators=(",", ":")).encode()
            if k:
                fh.write(b",")
                size += 1
            fh.write(data)
            size += len(data)
            k += 1
        fh.write(b"]}")
    return {"items": k, "bytes": path.stat().st_size}


def worker(mode: str, body: Path, out: Path) -> None:
    """One measurement in this (child) process; prints a JSON report."""
    import polars as pl

    from benchmarks.memory import reset_peak_rss, rss_mb
    from pipelines.garmin.push import parse_push
    from pipelines.lake.stage import with_lineage

    rss_imports = rss_mb()
    raw = body.read_bytes()
    file_row = {"sha256": "0" * 64, "path": body.name, "received_at": None}
    reset_peak_rss()
    began, cpu = time.perf_counter(), time.process_time()
    parsed = parse_push(raw)
    parsed_s = time.perf_counter() - began
    rows = {}
    if mode == "tables":
        for table, frame in parsed.tables().items():
            if frame.height:
                with_lineage(frame, file_row).write_parquet(out / f"{table}.parquet")
                rows[table] = frame.height
    else:
        counts = parsed.row_counts()
        for table, frame in parsed.lazy_tables().items():
            if counts[table]:
                labelled = with_lineage(frame, file_row)
                labelled.sink_parquet(out / f"{table}.parquet")
                rows[table] = counts[table]
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB → MB
    # The written tables, to check both modes write the same rows.
    written = {
        t: pl.scan_parquet(out / f"{t}.parquet").select(pl.len()).collect().item() for t in rows
    }
    print(
        json.dumps(
            {
                "mode": mode,
                "body_mb": round(len(raw) / MB, 1),
                "rss_after_imports_mb": round(rss_imports, 1),
                "peak_mb": round(peak, 1),
                "above_imports_mb": round(peak - rss_imports, 1),
                "peak_per_body": round(peak / (len(raw) / MB), 2),
                "parse_s": round(parsed_s, 2),
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "refusals": len(parsed.refusals),
                "rows": rows,
                "written_equal": written == rows,
            }
        )
    )


def run(mode: str, body: Path, pythonpath: str | None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, str(ROOT)) if p)
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "benchmarks.garmin_ingest_memory"]
        command += ["--worker", mode, "--body", str(body), "--out", out]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"mode": mode, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=200)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--pythonpath", help="run the children on this checkout's pipelines")
    parser.add_argument("--keep", type=Path, help="generate bodies here (reused when present)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--body", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.body, args.out)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for kind in args.kinds.split(","):
            body = folder / f"{kind}-{args.mb:g}mb.json"
            if not body.exists():
                print(kind, generate(kind, args.mb, body), flush=True)
            for mode in args.modes.split(","):
                print(kind, json.dumps(run(mode, body, args.pythonpath)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
