"""Plans through the whole pipeline: landing/plans → plan_matches in DuckDB."""

import io
import json
import shutil

import duckdb

from pipelines.cli import run_pipeline
from tests.conftest import land

PLAN = """
plan: block
sessions:
  - date: 2020-05-01
    name: track
    intervals:
      - {kind: warmup, duration: 6min}
      - repeat: 3
        intervals:
          - {kind: work, duration: "2:30", pace: "3:50-4:05/km"}
          - {kind: recovery, duration: 2min}
      - {kind: work, duration: "2:30", pace: "3:50-4:05/km"}
      - {kind: cooldown, duration: 6min}
  - date: 2020-05-02
    intervals: [{kind: work, duration: 30min}]
"""


def query(settings, sql):
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_plans_from_landing_are_matched(settings, fixtures):
    shutil.copy(
        fixtures / "fit" / "track_cs_834323.fit", land(settings, "fit/coached/run.fit", b"")
    )
    land(settings, "plans/coached/block.yaml", PLAN)
    land(settings, "plans/coached/broken.yaml", "sessions: [{date: 2020-05-04}]")
    workout = json.loads(
        (fixtures / "garmin" / "synthetic_training_workout_v2_run_intervals.json").read_text()
    )
    land(settings, "plans/coached/workouts/123456789.json", workout)
    land(
        settings, "plans/coached/schedules/may.json", {"workoutId": 123456789, "date": "2020-05-05"}
    )
    assert run_pipeline(settings, out=io.StringIO())
    rows = query(
        settings,
        "SELECT planned_date::VARCHAR, status, grade, evidence "
        "FROM plan_matches ORDER BY planned_date",
    )
    assert rows == [
        ("2020-05-01", "completed", "green", "manual_laps"),
        ("2020-05-02", "missed", "grey", None),
        ("2020-05-05", "missed", "grey", None),
    ]
    (n, within) = query(
        settings,
        "SELECT count(*), count(*) FILTER (WHERE within_target) "
        "FROM plan_interval_matches WHERE kind = 'work' "
        "AND session_id IS NOT NULL",
    )[0]
    assert (n, within) == (4, 4)
    reasons = [r[0] for r in query(settings, "SELECT reason FROM quarantine")]
    assert any("needs a non-empty 'intervals' list" in r for r in reasons)
    # editing a plan file in place replaces its sessions
    land(settings, "plans/coached/block.yaml", PLAN.split("  - date: 2020-05-02")[0])
    assert run_pipeline(settings, out=io.StringIO())
    assert query(settings, "SELECT count(*) FROM plan_matches")[0][0] == 2


def test_one_plan_copied_to_two_athletes_is_planned_for_both(settings):
    # A coach sends the same file to several athletes: the same bytes in two user folders
    # are two inputs (the ledger's hash covers the folder's user id).
    land(settings, "plans/athlete-a/block.yaml", PLAN)
    land(settings, "plans/athlete-b/block.yaml", PLAN)
    assert run_pipeline(settings, out=io.StringIO())
    rows = query(
        settings, "SELECT user_id, count(*) FROM planned_sessions GROUP BY ALL ORDER BY ALL"
    )
    assert rows == [("athlete-a", 2), ("athlete-b", 2)]
    assert query(settings, "SELECT count(*) FROM plan_matches")[0][0] == 4
