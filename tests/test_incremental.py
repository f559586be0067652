"""Incremental runs: only the touched days are rewritten, and the result equals a full rebuild."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil

import polars as pl

from pipelines.cli import copy_sample_data, run_pipeline
from pipelines.lake.layout import LakeLayout
from pipelines.warehouse.build import MODELS
from tests.lake_state import gold, warehouse

# Arrive in the second run: a new day of wellness, a new ride (FIT), the 900 s re-delivery of
# an epoch whose 720 s version arrived in the first run, and a plan for runs already in.
LATER = (
    "garmin/push/2026-01-03/",
    "garmin/push/2026-01-02/epochs-2.json",
    "fit/demo-rider/edge500-ride.fit",
    "plans/demo-runner/",
)


def files_with_mtime(folder) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.rglob("*.parquet")
        if not p.name.startswith(("_", "."))
    }


def test_incremental_run_equals_full_rebuild_and_rewrites_only_touched_days(settings, tmp_path):
    staged = tmp_path / "staged"
    copy_sample_data(staged)
    later = [
        p for p in staged.rglob("*") if p.is_file() and str(p.relative_to(staged)).startswith(LATER)
    ]
    assert len(later) >= 5
    held = tmp_path / "held"
    for path in later:
        target = held / path.relative_to(staged)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    shutil.copytree(staged, settings.landing, dirs_exist_ok=True)
    assert run_pipeline(settings, out=io.StringIO())
    before = warehouse(settings)
    silver_before = files_with_mtime(settings.lake / "silver")
    gold_before = files_with_mtime(settings.lake / "gold")

    shutil.copytree(held, settings.landing, dirs_exist_ok=True)
    assert run_pipeline(settings, out=io.StringIO())
    incremental = warehouse(settings)
    incremental_gold = gold(settings)
    assert incremental != before
    # The 900 s epoch replaced the 720 s one.
    assert len(incremental["epochs"]) == len(before["epochs"])

    # Days nobody delivered anything for kept their files untouched.
    silver_after = files_with_mtime(settings.lake / "silver")
    untouched = [k for k in silver_before if k.startswith("sessions/2016-")]
    assert untouched and all(silver_after[k] == silver_before[k] for k in untouched)
    gold_after = files_with_mtime(settings.lake / "gold")
    kept = [k for k in gold_before if k.startswith("samples/month=2016-")]
    assert kept and all(gold_after[k] == gold_before[k] for k in kept)
    assert any(gold_after.get(k) != v for k, v in gold_before.items())

    # The same bronze rebuilt from scratch gives the same warehouse and gold.
    shutil.rmtree(settings.lake / "silver")
    settings.duckdb.unlink()
    assert run_pipeline(settings, out=io.StringIO())
    assert warehouse(settings) == incremental
    full_gold = gold(settings)
    for table in MODELS:
        assert full_gold[table].equals(incremental_gold[table]), table


def test_reprocess_days_job_rederives_a_day_from_bronze(settings):
    import dagster as dg

    from pipelines.definitions import build_definitions

    copy_sample_data(settings.landing)
    assert run_pipeline(settings, out=io.StringIO())
    before = warehouse(settings)
    layout = LakeLayout(settings.lake)
    day_file = sorted((layout.silver_dir("sessions")).glob("2016-*.parquet"))[0]
    day_file.unlink()  # as if a day had been computed wrongly and thrown away

    job = build_definitions(settings).resolve_job_def("reprocess_days_job")
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(partition_key=day_file.stem, instance=instance)
    assert result.success
    assert day_file.exists()
    assert run_pipeline(settings, out=io.StringIO())
    assert warehouse(settings) == before


def test_changed_sql_models_rebuild_the_warehouse_in_full(settings, monkeypatch):
    from pipelines.warehouse import build

    copy_sample_data(settings.landing)
    assert run_pipeline(settings, out=io.StringIO())
    assert build.built_with_current_models(settings.duckdb)
    before = warehouse(settings)
    # An upgrade changed a model: the stored fingerprint no longer matches.
    monkeypatch.setattr(build, "models_fingerprint", lambda: "a different set of models")
    assert not build.built_with_current_models(settings.duckdb)
    inode = settings.duckdb.stat().st_ino
    assert run_pipeline(settings, out=io.StringIO())
    assert settings.duckdb.stat().st_ino != inode  # a fresh file was swapped in
    assert build.built_with_current_models(settings.duckdb)
    assert warehouse(settings) == before


def test_a_redelivery_that_moves_an_activity_to_another_day_leaves_one_session(settings, fixtures):
    from tests.conftest import land

    body = json.loads((fixtures / "garmin" / "openwearables_push_activities.json").read_text())
    land(settings, "garmin/push/first.json", body)
    assert run_pipeline(settings, out=io.StringIO())
    # The same activity (activityId, summaryId) re-sent with its start corrected by 400 days:
    # the days of both deliveries are recomputed together, wherever they lie.
    moved = copy.deepcopy(body)
    moved["activities"][0]["startTimeInSeconds"] += 400 * 86_400
    later = land(settings, "garmin/push/second.json", moved)
    os.utime(later, (later.stat().st_atime + 60, later.stat().st_mtime + 60))
    assert run_pipeline(settings, out=io.StringIO())  # blocking check: warehouse == silver
    rows = warehouse(settings)["sessions"]
    assert len(rows) == 1
    incremental = warehouse(settings)
    shutil.rmtree(settings.lake / "silver")
    settings.duckdb.unlink()
    assert run_pipeline(settings, out=io.StringIO())
    assert warehouse(settings) == incremental


def test_silver_built_by_other_code_is_rebuilt_in_full(settings, monkeypatch):
    """An upgrade that changes how silver is computed rebuilds it, though no input changed."""
    from pipelines.lake import partitions

    copy_sample_data(settings.landing)
    assert run_pipeline(settings, out=io.StringIO())
    reference = warehouse(settings)
    # Stand-in for silver written by older code: one day of sessions loses its rows.
    day = sorted((LakeLayout(settings.lake).silver_dir("sessions")).glob("2*.parquet"))[0]
    rows = pl.read_parquet(day).height
    pl.read_parquet(day).head(0).write_parquet(day)

    monkeypatch.setattr(partitions, "silver_code_fingerprint", lambda: "other code")
    assert run_pipeline(settings, out=io.StringIO())
    assert pl.read_parquet(day).height == rows
    assert warehouse(settings) == reference
    fingerprints = (LakeLayout(settings.lake).silver_state_dir("_index")).glob("*.code")
    assert {p.read_text() for p in fingerprints} == {"other code"}
