"""End to end through the Dagster definitions: landing → lake → DuckDB, idempotent, robust."""

from __future__ import annotations

import io
import shutil

import duckdb
import pytest

from pipelines.cli import copy_sample_data, main, run_pipeline
from tests.conftest import land

CONTRACT = {
    "sessions": [
        "session_id",
        "user_id",
        "source",
        "activity_id",
        "sport",
        "start_time_utc",
        "start_time_local",
        "utc_offset_s",
        "elapsed_s",
        "timer_s",
        "distance_m",
        "avg_hr",
        "max_hr",
        "device",
    ],
    "intervals": [
        "session_id",
        "user_id",
        "interval_index",
        "kind",
        "start_time_utc",
        "end_time_utc",
        "timer_s",
        "elapsed_s",
        "distance_m",
        "avg_speed_mps",
        "avg_pace_s_per_km",
        "avg_hr",
        "max_hr",
        "start_interpolated",
        "end_interpolated",
        "max_gap_s",
    ],
    "quarantine": ["input_path", "reason", "quarantined_at"],
}


def query(settings, sql):
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        return con.execute(sql).fetchall()


def snapshot(settings):
    return {
        table: query(settings, f"SELECT * FROM {table} ORDER BY ALL")
        for table in ("sessions", "intervals", "samples", "quarantine")
    }


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    """The bundled demo, run once through the CLI (as `make demo` does)."""
    home = tmp_path_factory.mktemp("demo") / "home"
    assert main(["demo", "--home", str(home)]) == 0
    from pipelines.settings import Settings

    return Settings.resolve(home=home)


def test_demo_fills_the_contract_tables(demo_home):
    for table, columns in CONTRACT.items():
        present = {
            r[0]
            for r in query(
                demo_home,
                f"SELECT column_name FROM information_schema.columns WHERE table_name='{table}'",
            )
        }
        assert set(columns) <= present, (table, set(columns) - present)
    (sessions,) = query(demo_home, "SELECT count(*) FROM sessions")[0]
    (intervals,) = query(demo_home, "SELECT count(*) FROM intervals")[0]
    assert sessions >= 5 and intervals >= 20
    sources = {r[0] for r in query(demo_home, "SELECT DISTINCT source FROM sessions")}
    assert sources == {"garmin_api", "fit"}


def test_demo_api_laps_match_the_device_laps_of_the_same_run(demo_home):
    # The demo's activityDetails body was built from a FIT run; its laps (start times only)
    # must measure what the watch measured.
    rows = query(
        demo_home,
        """
        SELECT i.distance_m, i.end_out_of_range FROM intervals i JOIN sessions s USING (session_id)
        WHERE s.activity_id = 1378220136 ORDER BY interval_index""",
    )
    device = [1609.35] * 6 + [591.23]
    assert len(rows) == 7
    # Garmin gives lap starts in whole seconds: ±1 s at ~3.2 m/s bounds the error near 0.6 %
    # of a mile lap and ~1.5 % of the short last lap.
    for (ours, _), truth in zip(rows, device, strict=True):
        assert ours == pytest.approx(truth, rel=0.02)
    assert sum(r[0] for r in rows) == pytest.approx(sum(device), rel=0.005)


def test_gold_parquet_partitioned_by_month_and_equal_to_the_warehouse(demo_home):
    import polars as pl

    for table in ("sessions", "intervals", "plan_matches"):
        folder = demo_home.lake / "gold" / table
        assert any(p.name.startswith("month=") for p in folder.iterdir())
        gold = pl.scan_parquet(folder / "**" / "*.parquet", hive_partitioning=True).collect()
        (rows,) = query(demo_home, f"SELECT count(*) FROM {table}")[0]
        assert gold.height == rows
    views = {
        r[0] for r in query(demo_home, "SELECT view_name FROM duckdb_views() WHERE NOT internal")
    }
    assert {"weekly_volume", "training_load", "weekly_compliance"} <= views
    (comment,) = query(
        demo_home, "SELECT comment FROM duckdb_tables() WHERE table_name = 'intervals'"
    )[0]
    assert "exact boundary" in comment


def test_run_twice_leaves_identical_tables(settings):
    copy_sample_data(settings.landing)
    assert run_pipeline(settings, out=io.StringIO())
    first = snapshot(settings)
    ledger_parts = sorted((settings.lake / "raw" / "ledger").glob("*.parquet"))
    assert run_pipeline(settings, out=io.StringIO())
    assert snapshot(settings) == first
    # nothing new: the ledger did not grow
    assert sorted((settings.lake / "raw" / "ledger").glob("*.parquet")) == ledger_parts


def test_same_content_twice_is_one_input(settings, fixtures):
    raw = (fixtures / "garmin" / "openwearables_push_activities.json").read_bytes()
    land(settings, "garmin/push/a.json", raw)
    land(settings, "garmin/push/copy-of-a.json", raw)
    assert run_pipeline(settings, out=io.StringIO())
    assert query(settings, "SELECT count(*) FROM sessions")[0][0] == 1


def test_malformed_payload_is_quarantined_and_the_rest_lands(settings, fixtures):
    land(
        settings,
        "garmin/push/good.json",
        (fixtures / "garmin" / "openwearables_push_activities.json").read_bytes(),
    )
    land(settings, "garmin/push/bad.json", '{"activities": [{"userId": ')
    land(
        settings,
        "garmin/push/mixed.json",
        {
            "activities": [
                {
                    "userId": "u9",
                    "summaryId": "77",
                    "activityId": 77,
                    "startTimeInSeconds": 1_700_000_000,
                    "durationInSeconds": 10,
                },
                {"userId": "u9", "summaryId": "78", "durationInSeconds": [1, 2]},
            ]
        },
    )
    land(settings, "fit/runner-1/empty.fit", b"")
    shutil.copy(
        fixtures / "fit" / "activity-filecrc.fit", land(settings, "fit/runner-1/crc.fit", b"")
    )
    out = io.StringIO()
    assert run_pipeline(settings, out=out)
    reasons = dict(
        (path, reason)
        for path, reason in query(settings, "SELECT input_path, reason FROM quarantine")
    )
    assert "malformed JSON" in reasons["garmin/push/bad.json"]
    assert "durationInSeconds" in reasons["garmin/push/mixed.json"]
    assert "empty file" in reasons["fit/runner-1/empty.fit"]
    users = {r[0] for r in query(settings, "SELECT user_id FROM sessions")}
    assert users == {"garmin_user_123", "u9", "runner-1"}  # CRC-damaged FIT still lands
    (integrity,) = query(settings, "SELECT integrity FROM sessions WHERE user_id='runner-1'")[0]
    assert integrity == "crc_mismatch"
    assert "bad.json" in out.getvalue()


def test_unsafe_user_folder_is_refused(settings, fixtures):
    land(settings, "fit/..hidden/x.fit", (fixtures / "fit" / "activity-filecrc.fit").read_bytes())
    land(settings, "fit/loose.fit", b"x")
    assert run_pipeline(settings, out=io.StringIO())
    assert query(settings, "SELECT count(*) FROM sessions")[0][0] == 0
    reasons = [r[0] for r in query(settings, "SELECT reason FROM quarantine ORDER BY reason")]
    assert any("unsafe user folder" in r for r in reasons)
    assert any("fit/<user_id>/" in r for r in reasons)


def _details_body(fixtures, user):
    import json

    from pipelines.fit.decode import decode_fit
    from pipelines.garmin.from_fit import activity_details_item

    run = decode_fit((fixtures / "fit" / "activity_1378220136.fit").read_bytes())
    return json.dumps({"activityDetails": [activity_details_item(run, user, 1378220136)]})


def test_fit_and_api_copies_of_one_activity_are_one_session(settings, fixtures):
    land(settings, "garmin/push/details.json", _details_body(fixtures, "runner-2"))
    shutil.copy(
        fixtures / "fit" / "activity_1378220136.fit",
        land(settings, "fit/runner-2/from-watch.fit", b""),
    )
    assert run_pipeline(settings, out=io.StringIO())
    rows = query(settings, "SELECT activity_id, source, sources FROM sessions")
    assert rows == [(1378220136, "fit", "fit,garmin_api")]
    # intervals come from the FIT laps, with the device's own totals beside ours
    (n, with_device) = query(settings, "SELECT count(*), count(device_distance_m) FROM intervals")[
        0
    ]
    assert n == with_device == 7


def test_ping_sidecar_links_a_fit_file_to_its_activity(settings, fixtures):
    import json

    shutil.copy(
        fixtures / "fit" / "activity_1378220136.fit",
        land(settings, "fit/runner-3/42-file.fit", b""),
    )
    land(
        settings,
        "fit/runner-3/42-file.fit.ping.json",
        json.dumps(
            {"userId": "runner-3", "summaryId": "42-file", "activityId": 4242, "fileType": "FIT"}
        ),
    )
    assert run_pipeline(settings, out=io.StringIO())
    assert query(settings, "SELECT activity_id, source FROM sessions") == [(4242, "fit")]
    assert query(settings, "SELECT count(*) FROM quarantine")[0][0] == 0


def test_pool_swim_laps_come_from_the_lengths_and_match_the_device(settings, fixtures):
    """A pool swim's records come only when a length is done and cannot tell a rest from a
    slow length; its ``length`` messages can. Every lap (100 m swims, 0 m rests) matches
    the watch's own totals: before, records gave errors of 15 m per lap (75 m for lap 0)."""
    shutil.copy(
        fixtures / "fit" / "activity_424479793.fit",
        land(settings, "fit/swimmer-1/pool.fit", b""),
    )
    assert run_pipeline(settings, out=io.StringIO())
    laps = query(
        settings,
        "SELECT distance_m, device_distance_m, timer_s, device_timer_s FROM intervals "
        "WHERE kind = 'lap' ORDER BY interval_index",
    )
    assert len(laps) == 15
    assert [d for _, d, *_ in laps] == [100.0, 0.0] * 7 + [100.0]
    for distance, device, timer, device_timer in laps:
        assert distance == pytest.approx(device, abs=0.5)
        if device > 0:  # swim laps; rests: the timer is stopped (the file's timer events)
            assert timer == pytest.approx(device_timer, abs=1.0)
    ((total,),) = query(settings, "SELECT sum(distance_m) FROM intervals WHERE kind = 'lap'")
    assert total == pytest.approx(800.0, abs=0.5)


def test_chained_fit_files_that_overlap_in_time_keep_their_own_samples(settings, fixtures):
    """Two FIT files back to back in one file (a paddleboard session and a pool swim, both
    starting at the same second): each session takes the records, laps and lengths of its
    own FIT file, so the swim's laps match the watch (before: measured on the paddleboard's
    records, 20,970 m for a 457 m swim)."""
    shutil.copy(
        fixtures / "fit" / "chained_Activity_activity_poolswim.fit",
        land(settings, "fit/swimmer-2/chained.fit", b""),
    )
    assert run_pipeline(settings, out=io.StringIO())
    sessions = query(
        settings, "SELECT sport, distance_m, elapsed_s FROM sessions ORDER BY elapsed_s"
    )
    assert [s for s, *_ in sessions] == ["swimming", "stand_up_paddleboarding"]
    laps = query(
        settings,
        "SELECT i.distance_m, device_distance_m FROM intervals i JOIN sessions s USING "
        "(session_id) WHERE s.sport = 'swimming' AND kind = 'lap' ORDER BY interval_index",
    )
    assert len(laps) == 9
    for distance, device in laps:
        assert distance == pytest.approx(device, abs=0.5)
    assert sum(d for d, _ in laps) == pytest.approx(457.2, abs=0.5)


def test_chained_fit_file_without_sessions_of_its_own_joins_the_chains_session(settings):
    """A chain whose first FIT file holds the records and whose second holds the lap and
    session: the records still find their session (by time, across the chain)."""
    from tests.fit_writer import FitWriter, chain

    t0 = 1_000_000_000  # FIT time
    records = FitWriter()
    records.define(0, "file_id", ["type", "manufacturer", "product", "time_created"])
    records.write(0, 4, 1, 3121, t0)
    records.define(1, "record", ["timestamp", "distance", "enhanced_speed"])
    for i in range(61):
        records.write(1, t0 + i, i * 300, 3000)  # 3 m/s
    summary = FitWriter()
    summary.define(0, "file_id", ["type", "manufacturer", "product", "time_created"])
    summary.write(0, 4, 1, 3121, t0)
    fields = ["timestamp", "start_time", "total_elapsed_time", "total_timer_time"]
    summary.define(1, "lap", [*fields, "total_distance"])
    summary.write(1, t0 + 60, t0, 60_000, 60_000, 18_000)
    summary.define(2, "session", [*fields, "total_distance", "sport"])
    summary.write(2, t0 + 60, t0, 60_000, 60_000, 18_000, 1)
    land(settings, "fit/runner-3/chained.fit", chain(records.to_bytes(), summary.to_bytes()))
    assert run_pipeline(settings, out=io.StringIO())
    assert query(settings, "SELECT count(*) FROM samples") == [(61,)]
    ((distance, device),) = query(
        settings, "SELECT distance_m, device_distance_m FROM intervals WHERE kind = 'lap'"
    )
    assert distance == pytest.approx(180.0) and device == pytest.approx(180.0)


def test_an_activity_in_two_files_takes_its_messages_from_the_newer_only(settings, fixtures):
    """The same 13 s activity alone in one file and as the first of two chained copies in
    another: one session per distinct activity, each lap once (the older file's copy of the
    shared activity is superseded and its laps and records go with it)."""
    shutil.copy(
        fixtures / "fit" / "activity-activity-filecrc.fit", land(settings, "fit/u/b.fit", b"")
    )
    assert run_pipeline(settings, out=io.StringIO())
    # newer: wins over the chain's first copy, whose lap must not move to the chain's second
    shutil.copy(fixtures / "fit" / "activity-filecrc.fit", land(settings, "fit/u/a.fit", b""))
    assert run_pipeline(settings, out=io.StringIO())
    rows = query(
        settings,
        "SELECT count(*), sum(distance_m), sum(device_distance_m) FROM intervals "
        "WHERE kind = 'lap' GROUP BY session_id",
    )
    assert len(rows) == len(query(settings, "SELECT * FROM sessions")) == 2
    for laps, distance, device in rows:
        assert laps == 1
        assert distance == pytest.approx(device, abs=0.1)


@pytest.mark.parametrize("sub_sport", [17, 0])  # lap_swimming; generic (some devices)
def test_pool_swim_length_rows_carry_the_records_heart_rate(settings, sub_sport):
    """The lap's distance comes from the lengths (the records, 5 s late, would give 95.8 m),
    whether the device says lap_swimming or leaves the sub-sport generic. The rows added at
    length boundaries hold the heart rate of the record before them (a value holds until the
    next sample): lap 0's average is the time-weighted mean of the records' values from the
    first record on, not one with holes at every boundary."""
    from tests.fit_writer import FitWriter

    t0 = 1_000_000_000
    w = FitWriter()
    w.define(0, "file_id", ["type", "manufacturer", "product", "time_created"])
    w.write(0, 4, 1, 3121, t0)
    w.define(1, "event", ["timestamp", "event", "event_type"])
    w.write(1, t0, 0, 0)  # timer start
    w.define(2, "length", ["timestamp", "start_time", "total_elapsed_time", "length_type"])
    w.define(3, "record", ["timestamp", "distance", "heart_rate"])
    # four 30 s lengths of 25 m; each record comes 5 s after its length ends
    for k in range(4):
        w.write(2, t0 + 30 * k + 30, t0 + 30 * k, 30_000, 1)
        w.write(3, t0 + 30 * k + 35, 2500 * (k + 1), 140 if k % 2 == 0 else 160)
    fields = ["timestamp", "start_time", "total_elapsed_time", "total_timer_time"]
    w.define(4, "lap", [*fields, "total_distance"])
    w.write(4, t0 + 120, t0, 120_000, 120_000, 10_000)
    w.write(1, t0 + 125, 0, 4)  # timer stop_all
    w.define(5, "session", [*fields, "total_distance", "sport", "sub_sport"])
    w.write(5, t0 + 125, t0, 125_000, 125_000, 10_000, 5, sub_sport)  # swimming
    land(settings, "fit/swimmer-3/pool.fit", w.to_bytes())
    assert run_pipeline(settings, out=io.StringIO())
    ((distance, avg_hr),) = query(
        settings, "SELECT distance_m, avg_hr FROM intervals WHERE kind = 'lap'"
    )
    assert distance == pytest.approx(100.0)
    # held from the records at 35 s (140), 65 s (160), 95 s (140) to the lap end at 120 s
    assert avg_hr == pytest.approx((140 * 30 + 160 * 30 + 140 * 25) / 85)


def test_every_table_and_column_is_declared_commented_and_documented(demo_home):
    from pipelines.warehouse.docs import DOC, tables_markdown, with_tables
    from pipelines.warehouse.tables import tables

    declared = {t.name: list(t.columns) for t in tables()}
    with duckdb.connect(str(demo_home.duckdb), read_only=True) as con:
        built = {}
        for table, column in con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'main' "
            "AND table_name IN (SELECT table_name FROM duckdb_tables() WHERE schema_name = "
            "'main') ORDER BY table_name, column_index"
        ).fetchall():
            built.setdefault(table, []).append(column)
        comments = dict(
            ((t, c), comment)
            for t, c, comment in con.execute(
                "SELECT table_name, column_name, comment FROM duckdb_columns() "
                "WHERE schema_name = 'main'"
            ).fetchall()
        )
        section = tables_markdown(con)
    # sql/tables.yaml lists every table and every column of its model, in order
    assert built == declared
    for t in tables():
        for column, meaning in t.columns.items():
            assert comments[(t.name, column)] == meaning
    # docs/data-model.md is written from the same declarations
    assert with_tables(DOC.read_text(), section) == DOC.read_text(), (
        "docs/data-model.md is stale: run python -m pipelines.warehouse.docs"
    )
