"""kill -9 at random points of an incremental run, then a run: warehouse and gold equal to a
run that never crashed, no temporary file left (the long version of
tests/test_crash_recovery.py, which stops at each stage boundary instead).

Each trial copies a home built from the sample data and a first batch, lands a second batch
(40 Garmin runs and a re-delivery moved two days later), starts ``wearhouse run``, sends
SIGKILL after a uniformly random delay within a clean run's duration, then runs again.

    .venv/bin/python -m benchmarks.crash_recovery [--trials 30] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.disk_full import WEARHOUSE, debris, first_landing, land_batch, run
from pipelines.settings import Settings
from tests.lake_state import assert_same_state

RESULTS = Path(__file__).with_name("results")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    trials = []
    with tempfile.TemporaryDirectory(prefix="wearhouse-crash-") as scratch:
        root = Path(scratch)
        first = Settings.resolve(home=root / "first")
        first_landing(first)
        assert run(first).returncode == 0
        reference = Settings.resolve(home=root / "reference")
        shutil.copytree(first.home, reference.home, symlinks=True)
        land_batch(reference, 2)
        started = time.perf_counter()
        assert run(reference).returncode == 0
        clean_s = time.perf_counter() - started
        for n in range(args.trials):
            settings = Settings.resolve(home=root / f"trial-{n}")
            shutil.copytree(first.home, settings.home, symlinks=True)
            land_batch(settings, 2)
            delay = rng.uniform(0, clean_s)
            process = subprocess.Popen(
                [WEARHOUSE, "run", "--home", str(settings.home)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(delay)
            process.kill()
            killed = process.wait() < 0
            repair = run(settings)
            try:
                assert_same_state(settings, reference)
                mismatch = ""
            except AssertionError as exc:
                mismatch = str(exc)[:300]
            trials.append(
                {
                    "delay_s": round(delay, 2),
                    "killed_mid_run": killed,
                    "repaired": repair.returncode == 0,
                    "mismatch": mismatch,
                    "debris": debris(settings.home),
                }
            )
            shutil.rmtree(settings.home)
            t = trials[-1]
            print(
                f"trial {n:>2}: kill at {delay:5.2f} s of {clean_s:.1f} s "
                f"({'mid-run' if killed else 'after the end'}): "
                f"{'ok' if t['repaired'] and not mismatch and not t['debris'] else 'BAD'}",
                flush=True,
            )
    bad = [t for t in trials if not t["repaired"] or t["mismatch"] or t["debris"]]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "crash_recovery.json").write_text(
        json.dumps(
            {"date": date.today().isoformat(), "clean_run_s": clean_s, "trials": trials}, indent=1
        )
    )
    print(
        f"{len(trials)} trials, {sum(t['killed_mid_run'] for t in trials)} killed mid-run, "
        f"{len(bad)} not repaired to the reference (clean run {clean_s:.1f} s)"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
