"""Disk full: a run on a small filesystem succeeds or fails with the OS error, publishes
nothing half done, and the next run with space gives the reference tables.

Each trial mounts a tmpfs of a given size (needs root; skipped otherwise) holding the whole
home, and runs ``wearhouse run`` as a user would:

* **full**: the sample data and a batch of 40 Garmin runs land on an empty home of S MB;
* **incremental**: a home built with space gets a second batch (40 runs and a re-delivery
  moved two days later), then the filesystem is shrunk to what is used plus H MB.

After a failed run: the failed step's line (``FAILED <step>: …``) names the OS error, the
published warehouse is the one before the run, no temporary file is left. Then the filesystem
grows, the second batch lands if it has not, and a run must give the reference (the same
landing run on the ordinary disk).

    .venv/bin/python -m benchmarks.disk_full [--full-mb 2,3,4,6] [--headroom-mb 0.25,1,4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from pipelines.cli import copy_sample_data
from pipelines.settings import Settings
from tests.lake_state import assert_same_state, warehouse

RESULTS = Path(__file__).with_name("results")
WEARHOUSE = str(Path(sys.executable).with_name("wearhouse"))
T0 = 1_767_254_400  # 2026-01-01T08:00Z
NO_SPACE = ("No space left on device", "Disk quota exceeded")
ROOMY_MB = 512


def _activity(user: str, activity_id: int, start: int, distance: float) -> dict:
    return {
        "userId": user,
        "summaryId": str(activity_id),
        "activityId": activity_id,
        "activityType": "RUNNING",
        "startTimeInSeconds": start,
        "startTimeOffsetInSeconds": 3600,
        "durationInSeconds": 1800,
        "distanceInMeters": distance,
    }


def land_batch(settings: Settings, batch: int) -> None:
    runs = [
        _activity(f"athlete-{n % 7}", 10_000 * batch + n, T0 + 86_400 * n, 1000.0 + n)
        for n in range(40)
    ]
    if batch == 2:
        runs.append(_activity("athlete-1", 10_001, T0 + 3 * 86_400, 1001.0))
    target = settings.landing / "garmin" / "push" / f"batch-{batch}" / "activities.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"activities": runs}))


def first_landing(settings: Settings) -> None:
    settings.ensure_dirs()
    copy_sample_data(settings.landing)
    land_batch(settings, 1)


def run(settings: Settings) -> subprocess.CompletedProcess:
    return subprocess.run(
        [WEARHOUSE, "run", "--home", str(settings.home)], capture_output=True, text=True
    )


@contextlib.contextmanager
def small_filesystem(folder: Path, size_mb: int):
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)], check=True
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def resize(folder: Path, size_mb: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size_mb}m", str(folder)], check=True)


def used_mb(folder: Path) -> float:
    return shutil.disk_usage(folder).used / 2**20


def can_mount(scratch: Path) -> bool:
    try:
        with small_filesystem(scratch / "probe", 1):
            return True
    except (subprocess.CalledProcessError, FileNotFoundError, PermissionError):
        return False


def reference(root: Path) -> Settings:
    settings = Settings.resolve(home=root / "reference")
    first_landing(settings)
    assert run(settings).returncode == 0
    land_batch(settings, 2)
    assert run(settings).returncode == 0
    return settings


def debris(home: Path) -> list[str]:
    return [str(p) for p in home.rglob(".*") if p.name != ".wearhouse-run.lock"]


def trial(root: Path, ref: Settings, phase: str, size_mb: float) -> dict:
    """One run on a filesystem too small (or just big enough), then the repair with space."""
    mount = root / f"{phase}-{size_mb}"
    with small_filesystem(mount, ROOMY_MB):
        settings = Settings.resolve(home=mount / "home")
        first_landing(settings)
        if phase == "incremental":
            assert run(settings).returncode == 0
            land_batch(settings, 2)
            before = warehouse(settings)
            resize(mount, max(1, int(used_mb(mount) + size_mb + 1)))
        else:
            before = None
            resize(mount, int(size_mb))
        started = time.perf_counter()
        tight = run(settings)
        seconds = time.perf_counter() - started
        failed = tight.returncode != 0
        failures = [line for line in tight.stderr.splitlines() if line.startswith("FAILED")]
        loud = any(text in line for line in failures for text in NO_SPACE)
        unchanged = (
            not failed
            or (before is None and not settings.duckdb.exists())
            or (before is not None and warehouse(settings) == before)
        )
        left = debris(settings.home)
        resize(mount, ROOMY_MB)
        if not (settings.landing / "garmin" / "push" / "batch-2").exists():
            land_batch(settings, 2)
        repair = run(settings)
        try:
            assert_same_state(settings, ref)
            mismatch = ""
        except AssertionError as exc:
            mismatch = f"not the reference: {exc}"[:300]
        return {
            "phase": phase,
            "size_mb": size_mb,
            "failed": failed,
            "failed_with_os_error": failed and loud,
            "previous_warehouse_kept": unchanged,
            "debris": left,
            "repaired_to_reference": repair.returncode == 0
            and not mismatch
            and not debris(settings.home),
            "repair_problem": repair.stderr.strip()[-300:] if repair.returncode else mismatch,
            "seconds": round(seconds, 1),
            "error": (failures or tight.stderr.strip().splitlines() or [""])[-1][:200],
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-mb", default="2,3,4,5,6,8,10,12,16")
    parser.add_argument("--headroom-mb", default="0.25,0.5,1,2,3,4,6,8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wearhouse-diskfull-") as scratch:
        root = Path(scratch)
        if not can_mount(root):
            print("disk_full: cannot mount a tmpfs here (needs root): skipped")
            return 0
        ref = reference(root)
        trials = [trial(root, ref, "full", float(s)) for s in args.full_mb.split(",")]
        trials += [trial(root, ref, "incremental", float(h)) for h in args.headroom_mb.split(",")]
    print(f"{'phase':<12}{'MB':>6}  {'failed':<7}{'OS error':<9}{'kept':<6}{'debris':<7}repaired")
    for t in trials:
        print(
            f"{t['phase']:<12}{t['size_mb']:>6}  {t['failed']!s:<7}{t['failed_with_os_error']!s:<9}"
            f"{t['previous_warehouse_kept']!s:<6}{len(t['debris']):<7}{t['repaired_to_reference']}"
        )
    bad = [
        t
        for t in trials
        if (t["failed"] and not t["failed_with_os_error"])
        or not t["previous_warehouse_kept"]
        or t["debris"]
        or not t["repaired_to_reference"]
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "disk_full.json").write_text(
        json.dumps({"date": date.today().isoformat(), "trials": trials}, indent=1)
    )
    print(
        f"{len(trials)} trials, {sum(t['failed'] for t in trials)} ran out of space, {len(bad)} bad"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
