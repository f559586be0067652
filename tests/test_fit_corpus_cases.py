"""Hard cases the public FIT corpus showed (benchmarks/corpus_check.py), each on the kind of
file it came from: the real file where its license lets us keep it in the repository
(tests/fixtures, credited in NOTICE), else a small file written the same way."""

from __future__ import annotations

import io
import shutil

import duckdb
import pytest

from pipelines.cli import run_pipeline
from tests.conftest import land
from tests.fit_writer import FitWriter


def query(settings, sql):
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        return con.execute(sql).fetchall()


def laps_of(settings):
    return query(
        settings,
        "SELECT s.sport, i.interval_index, i.timer_s, i.device_timer_s, i.distance_m, "
        "i.device_distance_m FROM intervals i JOIN sessions s USING (session_id) "
        "WHERE i.kind = 'lap' ORDER BY s.start_time_utc, i.interval_index",
    )


def run_file(settings, source, relative):
    shutil.copy(source, land(settings, relative, b""))
    assert run_pipeline(settings, out=io.StringIO())


def test_multisport_timer_runs_across_sessions(settings, fixtures):
    """A multisport file has one timer start (in its first session) and one ``stop_all`` (at
    the end of its last): the legs after the first start with the timer running, and the
    last lap ends at the stop. Each lap's timer is the time the timer ran inside it (before:
    the run leg's last lap read -17.5 s against the watch's 1.9 s)."""
    run_file(settings, fixtures / "corpus" / "activity_multisport.fit", "fit/tri-1/multi.fit")
    laps = laps_of(settings)
    assert [sport for sport, *_ in laps] == ["cycling"] * 5 + ["running"] * 2
    for _, _, timer, device_timer, *_ in laps:
        assert timer >= 0
        assert timer == pytest.approx(device_timer, abs=1.0)


def test_triathlon_laps_after_the_first_leg_keep_a_positive_timer(settings, fixtures):
    """A five-session triathlon (swim, transition, bike, transition, run): every lap's timer
    is positive and close to the watch's own lap timer (before: the run's last lap read
    minus the whole race). A leg's last lap ends a few seconds after its last record: there
    the timer is held at the last record (``end_out_of_range``), a few seconds short."""
    run_file(settings, fixtures / "fit" / "track_cs_1451.fit", "fit/tri-2/tri.fit")
    laps = query(
        settings,
        "SELECT s.sport, i.timer_s, i.device_timer_s, i.end_out_of_range FROM intervals i "
        "JOIN sessions s USING (session_id) WHERE i.kind = 'lap'",
    )
    assert len(laps) == 18
    assert {sport for sport, *_ in laps} == {"swimming", "transition", "cycling", "running"}
    for _, timer, device_timer, held in laps:
        assert timer > 0
        if held:
            assert device_timer - 7.0 < timer <= device_timer
        else:
            assert timer == pytest.approx(device_timer, abs=0.5)


def test_a_stop_before_any_start_means_the_timer_ran_from_the_session_start(settings, fixtures):
    """An FR70 run whose first timer event is a ``stop_all`` 11 min in (the watch started
    without writing a start): the timer ran until that stop, stood for the 110 s pause and
    ran again at the next start. The paused lap reads the watch's 669 s (before: -11.1 s)."""
    run_file(settings, fixtures / "fit" / "compressed-speed-distance.fit", "fit/r-1/run.fit")
    laps = laps_of(settings)
    assert len(laps) == 11
    for _, _, timer, device_timer, *_ in laps:
        assert timer == pytest.approx(device_timer, abs=3.0)
    assert laps[1][2] == pytest.approx(669.4, abs=1.0)


def _pool_swim_with_repeated_lengths() -> bytes:
    """A 25 m pool swim written like the Garmin Swim watch writes it: each 50 m is two
    ``length`` messages with the same start and the same elapsed time, a record at the end of
    each swim, a rest lap between (an idle length) and laps on whole seconds that overlap the
    lengths by a fraction of a second."""
    t0 = 1_000_000_000
    w = FitWriter()
    w.define(0, "file_id", ["type", "manufacturer", "product", "time_created"])
    w.write(0, 4, 1, 1499, t0)
    w.define(1, "event", ["timestamp", "event", "event_type"])
    w.write(1, t0, 0, 0)  # timer start
    w.define(2, "length", ["timestamp", "start_time", "total_elapsed_time", "length_type"])
    w.define(3, "record", ["timestamp", "distance"])
    fields = ["timestamp", "start_time", "total_elapsed_time", "total_timer_time"]
    w.define(4, "lap", [*fields, "total_distance"])
    done = 0
    start = t0
    for swim in range(4):
        for _ in range(2):  # the same 50 m written as two lengths
            w.write(2, start + 53, start, 53_172, 1)
        done += 50
        w.write(3, start + 53, done * 100)
        w.write(4, start + 53, start, 53_172, 53_172, 5000)
        start += 53
        if swim < 3:
            w.write(2, start + 15, start, 14_219, 0)  # rest: idle length
            w.write(4, start + 15, start, 14_219, 14_219, 0)
            start += 15
    w.write(1, start, 0, 4)  # timer stop_all
    w.define(5, "session", [*fields, "total_distance", "sport", "sub_sport"])
    w.write(5, start, t0, (start - t0) * 1000, (start - t0) * 1000, 20_000, 5, 17)
    return w.to_bytes()


def test_pool_swim_with_repeated_lengths_keeps_lap_distances(settings):
    """Lengths written twice (same start, same time) made the distance at their boundaries go
    down and up again; downstream that read as an odometer reset and every later lap carried
    the total before it (a 2,200 m swim's laps summed to 21,350 m; a rest lap read 375 m).
    Each lap now reads the watch's 50 m or 0 m."""
    land(settings, "fit/swimmer-9/pool.fit", _pool_swim_with_repeated_lengths())
    assert run_pipeline(settings, out=io.StringIO())
    laps = laps_of(settings)
    assert [device for *_, device in laps] == [50.0, 0.0] * 3 + [50.0]
    for *_, distance, device in laps:
        assert distance == pytest.approx(device, abs=0.5)
    ((total,),) = query(settings, "SELECT sum(distance_m) FROM intervals WHERE kind = 'lap'")
    assert total == pytest.approx(200.0, abs=0.5)


def test_a_lap_starting_before_its_session_is_kept_and_flagged(settings, fixtures):
    """A fenix 2 multisport file whose first session says it starts 45 min after its first
    lap (and its records) begin: the lap goes to the session holding its midpoint, keeps the
    watch's start, and says its start lies outside the session's samples (before: the lap
    was dropped without a word, 6 laps for the file's 7)."""
    run_file(
        settings,
        fixtures / "corpus" / "activity-large-fenxi2-multisport.fit",
        "fit/tri-3/multi.fit",
    )
    ((laps,),) = query(settings, "SELECT count(*) FROM intervals WHERE kind = 'lap'")
    assert laps == 7
    ((sport, start_out_of_range, device_m),) = query(
        settings,
        "SELECT s.sport, i.start_out_of_range, i.device_distance_m FROM intervals i "
        "JOIN sessions s USING (session_id) WHERE i.kind = 'lap' "
        "AND i.start_time_utc < s.start_time_utc",
    )
    assert (sport, start_out_of_range) == ("generic", True)
    assert device_m == pytest.approx(25073.55)


def test_a_lap_without_a_start_time_starts_at_its_session(settings, fixtures):
    """A truncated Sigma file (no session message, one lap with an end but no start time):
    the lap starts where its session (synthesized from the records) starts instead of being
    dropped, and reads the watch's distance."""
    run_file(settings, fixtures / "corpus" / "nick.fit", "fit/rider-1/nick.fit")
    ((lap_start, session_start, distance, device),) = query(
        settings,
        "SELECT i.start_time_utc, s.start_time_utc, i.distance_m, i.device_distance_m "
        "FROM intervals i JOIN sessions s USING (session_id) WHERE i.kind = 'lap'",
    )
    assert lap_start == session_start
    assert distance == pytest.approx(device, abs=0.5)


def test_laps_closed_with_the_previous_reading_match_the_device(settings, fixtures):
    """An Edge 530 closes each lap with the odometer of the record a second before the lap's
    boundary: its 30 s and 15 s time laps are the record distance between the readings a
    second before each boundary. The session's records reproduce the device's lap distances
    far better read that second earlier, so every lap is (before: the 30 s laps read up to
    5.6 m, 1.7 %, off)."""
    run_file(settings, fixtures / "corpus" / "hrv-activity.fit", "fit/edge/hrv.fit")
    laps = laps_of(settings)
    assert len(laps) == 15
    timed = [(d, dev) for _, i, _, _, d, dev in laps if 5 <= i <= 10]
    for distance, device in timed:
        assert distance == pytest.approx(device, abs=0.05)
    # The first record already reads a few metres at the session start, which the device's
    # first lap counts from zero: the sum stays within that.
    total = sum(d for *_, d, _ in laps)
    assert total == pytest.approx(sum(dev for *_, dev in laps), rel=1e-3)
