"""A run killed at any stage boundary leaves the previous state published, and the next run
catches up: warehouse and gold equal to a run that never crashed, no debris left."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import copy_sample_data, run_pipeline
from pipelines.settings import Settings
from tests.conftest import land
from tests.lake_state import assert_same_state
from tests.test_lifecycle import T0, activity
from tests.test_readers_and_runs import activities

CRASH_RUN = Path(__file__).with_name("crash_run.py")

# (function, before/after, which call): the boundaries between the stages of a run, and
# inside the warehouse stage between its commits.
BOUNDARIES = [
    ("pipelines.lake.ledger:register_landing", "after", 1),
    ("pipelines.garmin.ingest:ingest_push_files", "after", 1),
    ("pipelines.activities.refresh:refresh_silver_activities", "after", 1),
    ("pipelines.warehouse.gold:export_gold", "after", 1),
    ("pipelines.warehouse.gold:export_gold", "after", 3),
    ("pipelines.warehouse.build:_publish", "before", 1),
    ("pipelines.warehouse.build:_publish", "after", 1),
    ("pipelines.lake.partitions:clear_changes", "after", 1),
    ("pipelines.warehouse.gold:vacuum_gold", "before", 1),
]


def land_second_batch(settings: Settings) -> None:
    payload = activities(2)
    # An earlier run re-delivered two days later: its old gold day must lose it.
    payload["activities"].append(activity("athlete-1", 10_001, T0 + 3 * 86_400, 1001.0))
    land(settings, "garmin/push/batch-2/activities.json", payload)


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """The home after a first run, and the reference: the same home after a clean second."""
    root = tmp_path_factory.mktemp("crash")
    first = Settings.resolve(home=root / "first")
    first.ensure_dirs()
    copy_sample_data(first.landing)
    land(first, "garmin/push/batch-1/activities.json", activities(1))
    assert run_pipeline(first, out=io.StringIO())
    reference = Settings.resolve(home=root / "reference")
    shutil.copytree(first.home, reference.home, symlinks=True)
    land_second_batch(reference)
    assert run_pipeline(reference, out=io.StringIO())
    return first, reference


@pytest.mark.parametrize(("target", "when", "nth"), BOUNDARIES)
def test_a_run_killed_at_a_boundary_is_repaired_by_the_next(homes, tmp_path, target, when, nth):
    first, reference = homes
    settings = Settings.resolve(home=tmp_path / "home")
    shutil.copytree(first.home, settings.home, symlinks=True)
    land_second_batch(settings)
    crashed = subprocess.run(
        [sys.executable, str(CRASH_RUN), str(settings.home), target, when, str(nth)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert run_pipeline(settings, out=io.StringIO())
    assert_same_state(settings, reference)
    debris = [p for p in settings.home.rglob(".*") if ".wearhouse-run.lock" not in p.name]
    assert debris == []
