"""Run every benchmark, one after another, each in its own process (``make bench``).

By default at quick sizes (minutes in all on a 2-core machine); ``--full`` runs the sizes the
issues ask for (about an hour). Benchmarks that need the shared FIT corpus (``../shared``) say
so and are skipped when it is missing. Each benchmark prints its own side-by-side table and
writes its JSON under ``benchmarks/results/``; this script only runs them and lists what failed.

    .venv/bin/python -m benchmarks.run_all [--full] [--only interval_speed,incremental_build]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

SHARED_FIT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fit"

# name → (quick arguments, full arguments, needs the shared FIT corpus)
BENCHMARKS: dict[str, tuple[list[str], list[str], bool]] = {
    "interval_accuracy": ([], [], True),
    "interval_speed": (["--activities", "300"], ["--activities", "10000", "--repeat", "2"], False),
    "interval_streaming": (
        ["--sizes", "300,1000", "--part-activities", "300"],
        ["--sizes", "1000,10000,90000"],
        False,
    ),
    "fit_decode_speed": (["--runs", "1"], [], True),
    "fit_ingest_parallel": (["--runs", "1"], [], True),
    "garmin_ingest_speed": (
        ["--mb", "40", "--large-mb", "0"],
        ["--mb", "200", "--repeat", "2"],
        False,
    ),
    "plan_matching_speed": (["--athletes", "20"], [], False),
    "incremental_build": (
        ["--athletes", "100", "--days", "90", "--home", "/tmp/wearhouse-bench-quick"],
        [],
        False,
    ),
    "plan_detection_accuracy": (["--quick"], [], False),
    "fuzz_fit": (["--inputs", "1000", "--fixtures-only"], ["--full"], False),
    "fuzz_push": (["--inputs", "5000"], ["--inputs", "100000"], False),
    "garmin_ingest_memory": (["--mb", "40", "--modes", "stream"], [], False),
    "hostile_inputs": (["--quick"], [], False),
    "disk_full": (["--full-mb", "6,12", "--headroom-mb", "1,4"], [], False),
    "receiver_load": (["--seconds", "3"], ["--seconds", "20"], False),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the issues' sizes (about an hour)")
    parser.add_argument("--only", help="comma-separated benchmark names")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    failed = []
    for name in names:
        quick, full, needs_corpus = BENCHMARKS[name]
        if needs_corpus and not SHARED_FIT.is_dir():
            print(f"== {name}: skipped (needs the shared FIT corpus at {SHARED_FIT})", flush=True)
            continue
        command = [sys.executable, "-m", f"benchmarks.{name}", *(full if args.full else quick)]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.perf_counter() - started:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
