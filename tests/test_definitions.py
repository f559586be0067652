"""The code location loads (as `dagster dev -w workspace.yaml` would) without deprecations."""

import subprocess
import sys
import warnings
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_without_deprecation_warnings(settings):
    from pipelines.definitions import build_definitions

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        defs = build_definitions(settings)
        keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
        job = defs.resolve_job_def("wearhouse_job")
    assert {
        "raw_ledger",
        "bronze_garmin",
        "bronze_fit",
        "silver_activities",
        "sessions",
        "intervals",
        "samples",
        "quarantine",
    } <= keys
    assert job.name == "wearhouse_job"
    assert defs.resolve_schedule_def("daily_reconcile_schedule")
    assert defs.resolve_sensor_def("landing_sensor")


def test_workspace_code_location_loads(tmp_path):
    env = {
        "DAGSTER_HOME": str(tmp_path),
        "WEARHOUSE_HOME": str(tmp_path / "home"),
        "PATH": str(Path(sys.executable).parent),
    }
    (tmp_path / "dagster.yaml").write_text("")
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            str(ROOT / "workspace.yaml"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wearhouse" in result.stdout + result.stderr


def test_sensor_requests_one_run_per_batch(settings):
    from pipelines.definitions import build_definitions
    from tests.conftest import land

    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("landing_sensor")
    with dg.build_sensor_context(resources={"lake": defs.resources["lake"]}) as ctx:
        assert not sensor(ctx).run_requests  # empty landing: nothing to do
    land(settings, "garmin/push/a.json", {"activities": []})
    ctx = dg.build_sensor_context(resources={"lake": defs.resources["lake"]})
    first = sensor(ctx)
    assert len(first.run_requests) == 1
    again = sensor(
        dg.build_sensor_context(cursor=first.cursor, resources={"lake": defs.resources["lake"]})
    )
    assert not again.run_requests
    land(settings, "garmin/push/b.json", {"activities": []})
    third = sensor(
        dg.build_sensor_context(cursor=first.cursor, resources={"lake": defs.resources["lake"]})
    )
    assert len(third.run_requests) == 1
    assert third.cursor != first.cursor
