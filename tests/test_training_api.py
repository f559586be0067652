"""Plans to the watch: workout JSON, the idempotent sync against a fake Garmin API on loopback,
rate limits and errors, permissions, quotas, backfill and disconnect."""

from __future__ import annotations

import copy
import io
import json
import logging
import time
from datetime import date, timedelta

import duckdb
import polars as pl
import pytest
import yaml

from pipelines.cli import main, run_pipeline
from pipelines.lake.io import write_parquet_atomic
from pipelines.plans.garmin_workouts import workout_sessions
from pipelines.plans.model import unroll
from pipelines.training import endpoints
from pipelines.training.backfill import run_backfill, windows
from pipelines.training.client import MinuteWindow
from pipelines.training.config import ConfigError, TrainingConfig
from pipelines.training.sync import DELETED, FAILED, REFUSED, SYNCED, read_state
from pipelines.training.users import record_permissions
from pipelines.training.workouts import reroll, workout_json
from tests.conftest import land
from tests.fake_garmin import fake_garmin, workout_problem  # noqa: F401  (fixture)
from tests.training_harness import END, INTERVAL_PLAN, START, Harness, write_plans

ANA, BEN = "ana-1", "ben-2"


@pytest.fixture
def garmin(settings, fake_garmin):  # noqa: F811
    return Harness(settings, fake_garmin)


def _silver(layout):
    return (
        pl.read_parquet(layout.silver_path("planned_sessions")),
        pl.read_parquet(layout.silver_path("planned_steps")),
    )


def _interval_workout(layout) -> dict:
    sessions, steps = _silver(layout)
    session = sessions.filter(pl.col("name") == "6 x 800 m").row(0, named=True)
    rows = steps.filter(pl.col("planned_session_id") == session["planned_session_id"])
    return session, rows.sort("step_index").to_dicts()


# --- workout JSON (pure) ----------------------------------------------------------------------


def test_interval_plan_becomes_a_repeat_workout(layout):
    write_plans(layout, {ANA: INTERVAL_PLAN})
    session, steps = _interval_workout(layout)
    body = workout_json(session, steps)
    assert workout_problem(body) is None
    assert body["workoutProvider"] == "wearhouse"
    assert body["workoutSourceId"] == session["planned_session_id"]
    assert body["sport"] == "RUNNING"
    warmup, repeat, cooldown = body["segments"][0]["steps"]
    assert (warmup["intensity"], warmup["durationType"], warmup["durationValue"]) == (
        "WARMUP",
        "TIME",
        900,
    )
    assert repeat["type"] == "WorkoutRepeatStep" and repeat["repeatValue"] == 6
    work, recovery = repeat["steps"]
    assert (work["intensity"], work["durationType"], work["durationValue"]) == (
        "INTERVAL",
        "DISTANCE",
        800,
    )
    assert work["durationValueType"] == "METER"
    assert work["targetType"] == "PACE"
    # 4:00/km = 4.1667 m/s, 3:50/km = 4.3478 m/s: low is the slow end, in m/s
    assert work["targetValueLow"] == pytest.approx(1000 / 240, abs=1e-4)
    assert work["targetValueHigh"] == pytest.approx(1000 / 230, abs=1e-4)
    assert work["targetValueLow"] <= work["targetValueHigh"]
    assert (recovery["intensity"], recovery["durationType"], recovery["durationValue"]) == (
        "RECOVERY",
        "TIME",
        90,
    )
    assert cooldown["intensity"] == "COOLDOWN"
    orders = [warmup["stepOrder"], repeat["stepOrder"], work["stepOrder"]]
    assert [*orders, recovery["stepOrder"], cooldown["stepOrder"]] == [1, 2, 3, 4, 5]
    # Read back as the plans stage reads Garmin workouts: the same unrolled steps.
    back = unroll(workout_sessions("w", body, [session["planned_date"]], ANA)[0])
    keys = ("kind", "duration_type", "planned_duration_s", "planned_distance_m", "target_type")
    assert [{k: r[k] for k in keys} for r in back] == [{k: r[k] for k in keys} for r in steps]
    assert [r["target_low"] for r in back] == pytest.approx(
        [r["target_low"] for r in steps], abs=1e-4
    )


def test_nested_repeats_come_back_nested():
    def step(definition: int) -> dict:
        return {"definition_index": definition}

    # 2 x [A, 3 x [B, C]], D
    keys = [0, 1, 2, 1, 2, 1, 2, 0, 1, 2, 1, 2, 1, 2, 3]
    rolled = reroll([step(k) for k in keys])
    assert len(rolled) == 2
    outer = rolled[0]
    assert outer.times == 2 and outer.items[0]["definition_index"] == 0
    inner = outer.items[1]
    assert inner.times == 3 and [s["definition_index"] for s in inner.items] == [1, 2]
    assert rolled[1]["definition_index"] == 3


def test_heart_rate_targets_are_bpm(layout):
    write_plans(layout, {ANA: INTERVAL_PLAN})
    sessions, steps = _silver(layout)
    easy = sessions.filter(pl.col("name") == "easy").row(0, named=True)
    body = workout_json(
        easy, steps.filter(pl.col("planned_session_id") == easy["planned_session_id"]).to_dicts()
    )
    (step,) = body["segments"][0]["steps"]
    assert (step["targetType"], step["targetValueLow"], step["targetValueHigh"]) == (
        "HEART_RATE",
        130,
        145,
    )


# --- the sync ---------------------------------------------------------------------------------


def test_push_twice_sends_nothing_edit_puts_removal_deletes(garmin):
    garmin.connect(ANA)
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    first = garmin.push()
    assert len(first.created) == 3 and not first.failed
    assert [c.method for c in garmin.fake.sent()] == ["POST"] * 6  # workout + schedule each
    assert len(garmin.fake.workouts) == 3 and len(garmin.fake.schedules) == 3
    assert sorted(s["date"] for s in garmin.fake.schedules.values()) == [
        "2026-03-03",
        "2026-03-05",
        "2026-03-08",
    ]
    state = read_state(garmin.layout)
    assert state.get_column("status").to_list() == [SYNCED] * 3
    assert state.get_column("workout_id").null_count() == 0

    before = len(garmin.fake.calls)
    second = garmin.push()
    assert len(garmin.fake.calls) == before  # nothing sent at all
    assert second.unchanged == 3 and not (second.created or second.updated or second.deleted)

    edited = copy.deepcopy(INTERVAL_PLAN)
    edited["sessions"][0]["intervals"][1]["repeat"] = 8  # 8 x 800 m now
    del edited["sessions"][2]  # the long run is dropped from the plan
    write_plans(garmin.layout, {ANA: edited})
    before = len(garmin.fake.calls)
    third = garmin.push()
    new_calls = [(c.method, c.path.split("/")[1]) for c in garmin.fake.calls[before:]]
    assert sorted(new_calls) == [
        ("DELETE", "training-api"),  # the long run's schedule
        ("DELETE", "training-api"),  # and its workout
        ("PUT", "training-api"),  # the interval session, updated in place
    ]
    assert len(third.updated) == 1 and len(third.deleted) == 1 and third.unchanged == 1
    (workout,) = [w for w in garmin.fake.workouts.values() if w["workoutName"] == "6 x 800 m"]
    assert workout["segments"][0]["steps"][1]["repeatValue"] == 8
    assert len(garmin.fake.workouts) == 2 and len(garmin.fake.schedules) == 2
    statuses = dict(read_state(garmin.layout).select("planned_session_id", "status").iter_rows())
    assert sorted(statuses.values()) == [DELETED, SYNCED, SYNCED]

    # a moved session (same id, new date) is rescheduled, the workout untouched
    sessions, _ = _silver(garmin.layout)
    sessions = sessions.with_columns(
        pl.when(pl.col("name") == "easy")
        .then(pl.lit(date(2026, 3, 6)))
        .otherwise(pl.col("planned_date"))
        .alias("planned_date")
    )
    write_parquet_atomic(sessions, garmin.layout.silver_path("planned_sessions"))
    before = len(garmin.fake.calls)
    garmin.push()
    assert [(c.method, c.path.split("/")[2]) for c in garmin.fake.calls[before:]] == [
        ("PUT", "schedule")
    ]
    assert "2026-03-06" in {s["date"] for s in garmin.fake.schedules.values()}


def test_workout_deleted_on_garmin_is_recreated(garmin):
    garmin.connect(ANA)
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    garmin.push()
    # the athlete deletes two workouts in Garmin Connect (their schedules go with them)
    gone = sorted(garmin.fake.workouts)[:2]
    for wid in gone:
        del garmin.fake.workouts[wid]
        for sid in [s for s, v in garmin.fake.schedules.items() if v["workoutId"] == wid]:
            del garmin.fake.schedules[sid]
    # --verify finds them (GET 404) and recreates them
    report = garmin.push(verify=True)
    assert len(report.recreated) == 2 and not report.failed
    assert len(garmin.fake.workouts) == 3 and len(garmin.fake.schedules) == 3
    assert not set(gone) & set(garmin.fake.workouts)
    # an edit of a workout deleted on Garmin: PUT answers 404, the workout is recreated
    wid = next(iter(sorted(garmin.fake.workouts)))
    del garmin.fake.workouts[wid]
    edited = copy.deepcopy(INTERVAL_PLAN)
    for session in edited["sessions"]:
        session["name"] += " (v2)"
    write_plans(garmin.layout, {ANA: edited})
    before = len(garmin.fake.calls)
    report = garmin.push()
    puts = [c for c in garmin.fake.calls[before:] if c.method == "PUT" and "workout" in c.path]
    assert [c.status for c in puts].count(404) == 1
    assert len(report.recreated) == 1 and not report.failed
    names = sorted(w["workoutName"] for w in garmin.fake.workouts.values())
    assert names == ["6 x 800 m (v2)", "easy (v2)", "long run (v2)"]
    state = read_state(garmin.layout)
    assert set(state.get_column("workout_id")) == {str(w) for w in garmin.fake.workouts}


def test_permission_without_workout_import_is_refused(garmin):
    garmin.connect(ANA, permissions=["ACTIVITY_EXPORT", "HEALTH_EXPORT"])
    garmin.connect(BEN)
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN, BEN: INTERVAL_PLAN})
    # a userPermissionsChange notice for ana, as the users table carries it
    users = pl.DataFrame({"user_id": [ANA]}).with_columns(
        pl.lit(["ACTIVITY_EXPORT", "HEALTH_EXPORT"]).alias("permissions"),
        pl.lit("2026-02-01T00:00:00")
        .str.to_datetime(time_zone="UTC")
        .alias("permissions_changed_at"),
    )
    write_parquet_atomic(users, garmin.layout.silver_path("users"))
    report = garmin.push()
    assert len(report.refused) == 3 and len(report.created) == 3
    assert {c.user for c in garmin.fake.sent()} == {BEN}  # nothing sent for ana
    state = read_state(garmin.layout)
    refused = state.filter(pl.col("user_id") == ANA)
    assert refused.get_column("status").to_list() == [REFUSED] * 3
    assert refused.get_column("workout_id").null_count() == 3

    # a later GET permissions that lists WORKOUT_IMPORT wins over the older notice
    record_permissions(garmin.layout, ANA, ["ACTIVITY_EXPORT", "WORKOUT_IMPORT"])
    garmin.fake.permissions[ANA].append("WORKOUT_IMPORT")
    report = garmin.push()
    assert len(report.created) == 3 and not report.refused


def test_a_user_without_permission_record_counts_as_granted(garmin):
    garmin.connect(ANA)
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    assert len(garmin.push().created) == 3


def test_429_retry_after_is_honoured(garmin):
    garmin.connect(ANA)
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    garmin.fake.retry_after_s = 1
    garmin.fake.fail_next("POST", endpoints.WORKOUT_CREATE, 429)
    started = time.monotonic()
    report = garmin.push()
    assert len(report.created) == 3 and not report.failed
    first, second = garmin.fake.calls[0], garmin.fake.calls[1]
    assert first.status == 429 and second.method == "POST" and second.status == 200
    assert second.at - first.at >= 0.95  # waited for Retry-After
    assert time.monotonic() - started < 10


def test_fake_rate_limit_window_is_waited_out(garmin):
    garmin.connect(ANA)
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    garmin.fake.per_minute, garmin.fake.window_s, garmin.fake.retry_after_s = 4, 1.0, 1
    report = garmin.push()
    assert len(report.created) == 3 and not report.failed
    assert any(c.status == 429 for c in garmin.fake.calls)
    assert len(garmin.fake.workouts) == 3 and len(garmin.fake.schedules) == 3


def test_minute_window_waits_when_full():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    window = MinuteWindow(3, lambda: now[0], sleep)
    for _ in range(3):
        window.wait()
        now[0] += 1
    window.wait()
    assert slept == [pytest.approx(57.0)]


def test_5xx_is_retried_then_recorded_without_blocking_others(garmin):
    garmin.connect(ANA)
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    garmin.fake.fail_next("POST", endpoints.WORKOUT_CREATE, 503, times=3)  # = max_attempts
    report = garmin.push()
    assert len(report.failed) == 1 and len(report.created) == 2
    assert [c.status for c in garmin.fake.calls[:4]] == [503, 503, 503, 200]
    (failed_id, reason) = report.failed[0]
    assert "HTTP 503 after 3 attempts" in reason
    state = read_state(garmin.layout).filter(pl.col("planned_session_id") == failed_id)
    assert state.row(0, named=True)["status"] == FAILED
    assert state.row(0, named=True)["failures"] == 1
    # the next run retries it, and only it
    before = len(garmin.fake.calls)
    report = garmin.push()
    assert report.created == [failed_id] and report.unchanged == 2
    assert len(garmin.fake.calls) - before == 2


def test_400_and_schedule_failure_resume_without_duplicates(garmin):
    garmin.connect(ANA)
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    garmin.fake.fail_next("POST", endpoints.WORKOUT_CREATE, 400)
    garmin.fake.fail_next("POST", endpoints.SCHEDULE_CREATE, 500, times=3)
    report = garmin.push()
    assert len(report.failed) == 2
    assert any("HTTP 400" in why for _, why in report.failed)
    # the workout whose schedule failed exists once; the next run only schedules it
    before = len(garmin.fake.workouts)
    report = garmin.push()
    assert not report.failed
    assert len(garmin.fake.workouts) == before + 1 == 3
    assert len(garmin.fake.schedules) == 3


def test_daily_quota_per_user(garmin):
    garmin.connect(ANA)
    garmin.connect(BEN)
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN, BEN: INTERVAL_PLAN})
    day = [date(2026, 3, 1)]
    with garmin.client(per_user_day=3, today=lambda: day[0]) as client:
        report = garmin.push(client=client)
    # 3 calls each: one session fully (2 calls) and one workout (1 call) per user
    assert {c.user for c in garmin.fake.sent()} == {ANA, BEN}
    assert sum(c.user == ANA for c in garmin.fake.sent()) == 3
    assert any("daily quota" in why for _, why in report.failed)
    # the same day, a new run (a new ledger read from the lake) sends nothing more
    before = len(garmin.fake.calls)
    with garmin.client(per_user_day=3, today=lambda: day[0]) as client:
        garmin.push(client=client)
    assert len(garmin.fake.calls) == before
    # the next day it finishes, without duplicates
    day[0] = date(2026, 3, 2)
    with garmin.client(per_user_day=3, today=lambda: day[0]) as client:
        garmin.push(client=client)
    with garmin.client(per_user_day=100, today=lambda: day[0]) as client:
        report = garmin.push(client=client)
    assert not report.failed
    assert len(garmin.fake.workouts) == 6 and len(garmin.fake.schedules) == 6


def test_tokens_never_in_logs_state_or_errors(garmin, caplog):
    token_a = garmin.connect(ANA)
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    garmin.fake.fail_next("POST", endpoints.WORKOUT_CREATE, 502, times=3)
    garmin.fake.fail_next("POST", endpoints.SCHEDULE_CREATE, 400)
    caplog.set_level(logging.DEBUG)
    report = garmin.push()
    assert report.failed
    # a token the API no longer accepts: the error says 401, never the token
    garmin.fake.access.pop(token_a)
    garmin.fake.fail_next("PUT", "/training-api", 500)
    edited = copy.deepcopy(INTERVAL_PLAN)
    edited["sessions"][1]["name"] = "easier"
    write_plans(garmin.layout, {ANA: edited})
    report = garmin.push()
    assert any("401" in why for _, why in report.failed)
    texts = [caplog.text, json.dumps(report.failed)]
    texts += [
        p.read_bytes().decode("latin-1")
        for p in garmin.settings.home.rglob("*")
        if p.is_file() and p != garmin.tokens_json
    ]
    assert not [t for t in texts if token_a in t]


def test_http_only_for_loopback():
    for url in ("http://apis.garmin.com", "http://10.0.0.5:8080", "ftp://127.0.0.1"):
        with pytest.raises(ConfigError):
            TrainingConfig(api_url=url)
    for url in (
        "https://apis.garmin.com",
        "http://127.0.0.1:8080",
        "http://localhost",
        "http://[::1]:1",
    ):
        assert TrainingConfig(api_url=url).api_url == url.rstrip("/")
    with pytest.raises(ConfigError):
        TrainingConfig(token_url="http://diauth.garmin.com/oauth/token")


def test_cli_push_plans(garmin, settings, monkeypatch, capsys):
    garmin.connect(ANA)
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    for name, value in garmin.environ().items():
        monkeypatch.setenv(name, value)
    home = ["--home", str(settings.home)]
    window = ["--from", START.isoformat(), "--to", END.isoformat()]
    assert main(["garmin", "push-plans", *window, "--dry-run", *home]) == 0
    assert "3 would be created" in capsys.readouterr().out
    assert garmin.fake.sent() == []
    assert main(["garmin", "push-plans", "--user", ANA, *window, *home]) == 0
    out = capsys.readouterr().out
    assert "3 created, 0 updated, 0 deleted, 0 refused, 0 failed" in out
    assert main(["garmin", "push-plans", *window, *home]) == 0
    assert (
        "0 created, 0 updated, 0 deleted, 0 refused, 0 failed, 3 unchanged"
        in capsys.readouterr().out
    )
    # the run itself failing (plain http to a remote host) is a non-zero exit
    monkeypatch.setenv("WEARHOUSE_GARMIN_API_URL", "http://apis.garmin.com")
    assert main(["garmin", "push-plans", *window, *home]) == 2
    assert "refused" in capsys.readouterr().err
    assert main(["garmin", "push-plans", "--user", "../etc", *window, *home]) == 2


# --- backfill ---------------------------------------------------------------------------------


def test_backfill_windows():
    spans = windows("activities", date(2026, 1, 1), date(2026, 4, 10))
    assert [(e - s) // 86400 for s, e in spans] == [30, 30, 30, 10]
    assert [
        (e - s) // 86400 for s, e in windows("dailies", date(2026, 1, 1), date(2026, 4, 10))
    ] == [90, 10]


def test_backfill_records_each_request_and_resumes(garmin):
    garmin.connect(ANA)
    garmin.connect(BEN, permissions=["ACTIVITY_EXPORT"])
    spans = windows("activities", date(2026, 1, 1), date(2026, 4, 10))
    garmin.fake.backfills.add((ANA, "activities", *spans[1]))  # asked for before: 409
    garmin.fake.fail_next("GET", "/wellness-api/rest/backfill", 500, times=3)
    with garmin.client() as client:
        report = run_backfill(
            garmin.layout, client, ANA, "activities", date(2026, 1, 1), date(2026, 4, 10)
        )
    assert report.requested == 2 and report.duplicate == 1 and len(report.failed) == 1
    with garmin.client() as client:
        report = run_backfill(
            garmin.layout, client, ANA, "activities", date(2026, 1, 1), date(2026, 4, 10)
        )
    assert report.requested == 1 and report.already_done == 3 and not report.failed
    assert len([c for c in garmin.fake.sent() if c.status == 202]) == 3
    # no HISTORICAL_DATA_EXPORT: recorded as forbidden, never asked again
    with garmin.client() as client:
        report = run_backfill(
            garmin.layout, client, BEN, "dailies", date(2026, 1, 1), date(2026, 1, 31)
        )
    assert report.forbidden == 1
    before = len(garmin.fake.calls)
    with garmin.client() as client:
        report = run_backfill(
            garmin.layout, client, BEN, "dailies", date(2026, 1, 1), date(2026, 1, 31)
        )
    assert report.already_done == 1 and len(garmin.fake.calls) == before


# --- disconnect -------------------------------------------------------------------------------


def test_disconnect_deletes_registration_and_lands_a_deregistration(garmin, settings, monkeypatch):
    garmin.connect(ANA)
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    garmin.push()
    for name, value in garmin.environ().items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert main(["garmin", "disconnect", "--user", ANA, "--home", str(settings.home)]) == 0
    assert ANA not in garmin.fake.registered
    (notice,) = (settings.landing / "garmin" / "push").rglob("*.json")
    assert json.loads(notice.read_text()) == {"deregistrations": [{"userId": ANA}]}
    assert read_state(garmin.layout).height == 0  # the user's outbound rows are gone
    assert "next `wearhouse run` erases" in out.getvalue()


# --- through the Dagster asset ----------------------------------------------------------------


def test_asset_pushes_when_enabled_and_is_off_by_default(garmin, settings, monkeypatch):
    garmin.connect(ANA)
    plan = copy.deepcopy(INTERVAL_PLAN)
    today = date.today()
    for offset, session in zip((1, 3, 40), plan["sessions"], strict=True):
        session["date"] = (today + timedelta(days=offset)).isoformat()  # the last is too far
    land(settings, f"plans/{ANA}/spring.yaml", yaml.safe_dump(plan))
    for name, value in garmin.environ().items():
        monkeypatch.setenv(name, value)
    assert run_pipeline(settings, out=io.StringIO())
    assert garmin.fake.sent() == []  # off by default
    monkeypatch.setenv("WEARHOUSE_GARMIN_PUSH_PLANS", "1")
    assert run_pipeline(settings, out=io.StringIO())
    assert len(garmin.fake.workouts) == 2  # the window: today to +28 days
    state = read_state(garmin.layout)
    assert state.get_column("status").to_list() == [SYNCED, SYNCED]
    before = len(garmin.fake.calls)
    assert run_pipeline(settings, out=io.StringIO())
    assert len(garmin.fake.calls) == before
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        rows = con.execute(
            "SELECT user_id, status, workout_id IS NOT NULL FROM garmin_workouts"
        ).fetchall()
    assert rows == [(ANA, SYNCED, True)] * 2
