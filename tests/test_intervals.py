"""Interval alignment against independently computed truth (synthetic) and device laps (FIT)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import polars as pl
import pytest

from pipelines.intervals import clean_samples, interpolate_at, interval_metrics

START = 1_700_000_000.0
# (from_s, to_s, speed m/s); 600–660 is a pause: timer stopped, distance flat.
PHASES = [(0, 300, 3.0), (300, 600, 5.0), (600, 660, 0.0), (660, 1000, 4.0)]
PAUSE = (600, 660)


def true_distance(t: np.ndarray) -> np.ndarray:
    d = np.zeros_like(t, dtype=float)
    for lo, hi, v in PHASES:
        d += v * np.clip(t - lo, 0, hi - lo)
    return d


def true_timer(t: np.ndarray) -> np.ndarray:
    return t - np.clip(t - PAUSE[0], 0, PAUSE[1] - PAUSE[0])


def smart_recorded(seed: int = 7) -> np.ndarray:
    """Sample instants 1–9 s apart, plus one at every speed change (as smart recording does)."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.integers(1, 10, size=400)).astype(float)
    t = t[t < 1000]
    return np.unique(np.concatenate([[0.0, 300.0, 600.0, 660.0, 1000.0], t]))


def samples_frame(t: np.ndarray, session_id: str = "s1") -> pl.DataFrame:
    hr = 120 + (np.arange(len(t)) % 11) * 3.0  # arbitrary, held until the next sample
    return pl.DataFrame(
        {
            "session_id": session_id,
            "t_s": START + t,
            "distance_m": true_distance(t),
            "timer_s": true_timer(t),
            "hr_bpm": hr,
            "elevation_m": 100 + np.sin(t / 50.0),
        }
    )


LAPS = [(0.0, 100.5), (100.5, 333.3), (333.3, 700.7), (700.7, 1000.0)]


def laps_frame(session_id: str = "s1", laps=LAPS) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "session_id": session_id,
            "kind": "lap",
            "interval_index": list(range(len(laps))),
            "start_s": [START + a for a, _ in laps],
            "end_s": [START + b for _, b in laps],
        }
    )


def measure(samples: pl.DataFrame, laps: pl.DataFrame) -> pl.DataFrame:
    return interval_metrics(clean_samples(samples.lazy()), laps.lazy()).collect()


def true_held_mean(t: np.ndarray, values: np.ndarray, a: float, b: float) -> float:
    grid = np.arange(a, b, 0.001) + 0.0005
    idx = np.searchsorted(t, grid, side="right") - 1
    return float(values[idx].mean())


def test_boundaries_interpolated_exactly_between_samples():
    t = smart_recorded()
    samples = samples_frame(t)
    out = measure(samples, laps_frame())
    starts = np.array([a for a, _ in LAPS])
    ends = np.array([b for _, b in LAPS])
    assert out["distance_m"].to_numpy() == pytest.approx(
        true_distance(ends) - true_distance(starts), abs=1e-6
    )
    assert out["timer_s"].to_numpy() == pytest.approx(
        true_timer(ends) - true_timer(starts), abs=1e-6
    )
    assert out["elapsed_s"].to_numpy() == pytest.approx(ends - starts)
    assert out["paused_s"][2] == pytest.approx(60.0)
    assert out["pause_count"].to_list() == [0, 0, 1, 0]
    # every interior boundary falls between samples here
    assert out["start_interpolated"].to_list()[1:] == [True, True, True]
    assert not out["start_out_of_range"].any() and not out["end_out_of_range"].any()


def test_activity_longer_than_a_day_across_midnights():
    """A 30 h ultra starting at 20:00 UTC (two midnights): speed changes hourly (recorded when
    it changes, as smart recording does), an hour's rest without samples at 24 h; laps at
    every 10 km passed, boundaries between samples. Exact against the analytic truth."""
    hours = np.arange(31) * 3600.0
    speeds = 2.0 + 0.5 * np.sin(np.arange(30))  # m/s in each hour
    speeds[24] = 0.0  # resting: distance flat, timer stopped
    rng = np.random.default_rng(3)
    t = np.unique(np.concatenate([hours, np.cumsum(rng.integers(1, 10, size=12_000)) * 1.0]))
    t = t[t <= hours[-1]]
    t = t[(t <= 24 * 3600) | (t >= 25 * 3600)]  # no samples while resting

    def distance(x):
        covered = np.clip(x[:, None] - hours[None, :-1], 0.0, 3600.0)
        return covered @ speeds

    def timer(x):
        return x - np.clip(x - 24 * 3600, 0.0, 3600.0)

    start = 1_700_078_400.0  # 2023-11-15T20:00:00Z
    samples = pl.DataFrame(
        {"session_id": "ultra", "t_s": start + t, "distance_m": distance(t), "timer_s": timer(t)}
    )
    marks = np.arange(10_000.0, distance(t[-1:])[0], 10_000.0)
    grid = np.arange(0.0, hours[-1] + 0.5, 0.5)
    crossings = np.interp(marks, distance(grid), grid)  # speed is constant within each hour
    bounds = np.concatenate([[0.0], crossings, [t[-1]]])
    laps = laps_frame(
        "ultra", [(start + a - START, start + b - START) for a, b in pairwise(bounds)]
    )
    out = measure(samples, laps)
    assert len(out) >= 20 and out["end_s"].max() - out["start_s"].min() > 29 * 3600
    assert out["distance_m"].to_numpy() == pytest.approx(
        distance(bounds[1:]) - distance(bounds[:-1]), abs=1e-6
    )
    assert out["timer_s"].to_numpy() == pytest.approx(
        timer(bounds[1:]) - timer(bounds[:-1]), abs=1e-6
    )
    assert out["distance_m"][:-1].to_numpy() == pytest.approx(10_000.0, abs=1e-6)
    assert out["paused_s"].sum() == pytest.approx(3600.0, abs=1e-6)


def test_naive_sample_differencing_is_wrong_where_ours_is_right():
    t = smart_recorded()
    samples = samples_frame(t)
    ends = np.array([b for _, b in LAPS])
    starts = np.array([a for a, _ in LAPS])
    idx = lambda x: np.searchsorted(t, x)  # noqa: E731 — first sample at/after the boundary
    naive = true_distance(t[np.minimum(idx(ends), len(t) - 1)]) - true_distance(t[idx(starts)])
    truth = true_distance(ends) - true_distance(starts)
    ours = measure(samples, laps_frame())["distance_m"].to_numpy()
    assert np.abs(naive - truth).max() > 1.0
    assert np.abs(ours - truth).max() < 1e-6


def test_heart_rate_is_time_weighted_over_the_exact_interval():
    t = smart_recorded()
    samples = samples_frame(t)
    out = measure(samples, laps_frame())
    hr = samples["hr_bpm"].to_numpy()
    for row, (a, b) in zip(out.iter_rows(named=True), LAPS, strict=True):
        assert row["avg_hr"] == pytest.approx(true_held_mean(t, hr, a, b), abs=0.01)
        held_at_start = hr[np.searchsorted(t, a, side="right") - 1]
        inside = hr[(t >= a) & (t < b)]
        assert row["max_hr"] == max(inside.max(initial=0), held_at_start)


def test_order_duplicates_and_several_sessions_do_not_change_results():
    t = smart_recorded()
    one = measure(samples_frame(t), laps_frame())
    shuffled = samples_frame(t).sample(fraction=1.0, shuffle=True, seed=3)
    doubled = pl.concat([shuffled, shuffled.head(50), samples_frame(t, "s2")])
    laps = pl.concat([laps_frame("s1"), laps_frame("s2")])
    both = measure(doubled, laps)
    for sid in ("s1", "s2"):
        got = both.filter(pl.col("session_id") == sid).drop("session_id")
        assert got.equals(one.drop("session_id"))


def test_distance_reset_is_rebased():
    t = smart_recorded()
    samples = samples_frame(t)
    # the odometer restarts from zero after the sample at 600 s (e.g. a new FIT section)
    at_reset = float(true_distance(np.array([600.0]))[0])
    broken = samples.with_columns(
        pl.when(pl.col("t_s") > START + 600)
        .then(pl.col("distance_m") - at_reset)
        .otherwise(pl.col("distance_m"))
    )
    assert broken["distance_m"].min() < 1.0  # the reset is really there
    assert measure(broken, laps_frame())["distance_m"].to_numpy() == pytest.approx(
        measure(samples, laps_frame())["distance_m"].to_numpy(), abs=1e-6
    )


def test_boundaries_outside_samples_are_flagged_not_invented():
    t = smart_recorded()
    samples = samples_frame(t).filter(pl.col("t_s").is_between(START + 50, START + 900))
    out = measure(samples, laps_frame())
    assert out["start_out_of_range"].to_list() == [True, False, False, False]
    assert out["end_out_of_range"].to_list() == [False, False, False, True]
    # the edge value is held: distance before the first sample is not extrapolated
    first = samples.row(0, named=True)
    at = interpolate_at(
        samples.lazy(), pl.LazyFrame({"session_id": ["s1"], "t_s": [START]})
    ).collect()
    assert at["distance_m"][0] == first["distance_m"]
    assert at["out_of_range"][0]


def test_distance_counts_from_zero_where_the_first_sample_has_none():
    """The first sample (timer start) often has no distance: a first reading the speeds can
    reach gives the start 0 m; a first reading they cannot (a stream starting mid-activity)
    is held, not invented."""
    t = np.array([0.0, 5.0, 9.0, 14.0, 20.0])
    d = np.array([np.nan, 15.0, 27.0, 42.0, 60.0])  # NaN: missing, as null
    for first_reading, start_value in ((15.0, 0.0), (5015.0, 5015.0)):
        samples = pl.DataFrame(
            {
                "session_id": "s",
                "t_s": START + t,
                "distance_m": d + (first_reading - 15.0),
                "speed_mps": [None, 3.0, 3.0, 3.0, 3.0],
                "hr_bpm": 120.0,
            }
        )
        out = measure(samples, laps_frame("s", [(0.0, 20.0)]))
        assert out["distance_m"][0] == pytest.approx(60.0 + first_reading - 15.0 - start_value)
        assert not out["start_out_of_range"][0]


def test_real_first_lap_keeps_the_distance_before_the_first_reading(fixtures):
    """Wahoo ELEMNT BOLT: the first record (the lap start) has no distance, the next ones do.
    With records 1–4 dropped (smart recording) the first reading is 29 m in; holding it back to
    the start would lose those 29 m (−3 % on this lap); the device's lap total is the truth."""
    from pipelines.fit.decode import decode_fit

    name = "elemnt-bolt-no-application-id-inside-developer-data-id.fit"
    decoded = decode_fit((fixtures / "fit" / name).read_bytes())
    epoch = lambda c: pl.col(c).dt.epoch("ms") / 1000  # noqa: E731
    records = decoded.records.select(
        pl.lit("s").alias("session_id"), epoch("time_utc").alias("t_s"), "distance_m", "speed_mps"
    )
    assert records["distance_m"][0] is None and records["distance_m"][1] == 0.0
    lap = decoded.laps.row(0, named=True)
    start = lap["start_time_utc"].timestamp()
    laps = laps_frame("s", [(start - START, start + lap["total_elapsed_time_s"] - START)])
    thinned = records.filter(~pl.int_range(pl.len()).is_between(1, 4))
    assert thinned["distance_m"][1] > 25.0
    error = measure(thinned, laps)["distance_m"][0] / lap["total_distance_m"] - 1
    assert abs(error) < 0.01


def test_session_start_before_the_first_sample_gets_a_zero_sample():
    """A session starts at 0 s, its first sample comes at 30 s with 25 m (a pool length):
    with the session's start and end given, the start gets a sample reading 0 m and 0 s.
    Not when the first reading is out of reach (mid-activity stream) or the samples lie
    outside the session (another activity's stream)."""
    t = np.array([30.0, 61.0, 95.0, 128.0])
    frame = pl.DataFrame(
        {
            "session_id": "swim",
            "user_id": "u1",  # a ride-along column
            "t_s": START + t,
            "distance_m": [25.0, 50.0, 75.0, 100.0],
            "timer_s": t,
            "speed_mps": [0.85, 0.8, 0.75, 0.76],
            "hr_bpm": [120.0, 125.0, 128.0, 130.0],
        }
    )
    starts = pl.LazyFrame({"session_id": ["swim"], "start_s": [START], "end_s": [START + 130]})
    cleaned = clean_samples(frame.lazy(), starts).collect()
    first = cleaned.row(0, named=True)
    assert cleaned.height == 5 and first["t_s"] == START
    assert (first["distance_m"], first["timer_s"], first["hr_bpm"]) == (0.0, 0.0, None)
    assert first["user_id"] == "u1" and first["session_id"] == "swim"
    assert (
        cleaned.slice(1).select(frame.columns).equals(frame.select(frame.columns), null_equal=True)
    )
    lap = measure_with(cleaned, laps_frame("swim", [(0.0, 128.0)]))
    assert lap["distance_m"][0] == pytest.approx(100.0)
    assert lap["timer_s"][0] == pytest.approx(128.0)
    assert not lap["start_out_of_range"][0]

    far = frame.with_columns(pl.col("distance_m") + 5000)  # the stream starts mid-activity
    assert clean_samples(far.lazy(), starts).collect().height == 4
    elsewhere = starts.with_columns(pl.col("start_s") - 86_400, pl.col("end_s") - 86_400)
    assert clean_samples(frame.lazy(), elsewhere).collect().height == 4


def test_session_start_samples_go_to_their_own_sessions():
    """300 sessions, each starting 10–40 s before its first sample and given in another order
    than the samples: every added start sample sits at its own session's start."""
    rng = np.random.default_rng(5)
    n = 300
    ids = [f"s{k:03d}" for k in rng.permutation(n)]
    lead = rng.uniform(10, 40, n)
    frames = []
    for k, sid in enumerate(ids):
        t0 = START + k * 10_000.0
        t = t0 + lead[k] + np.arange(5) * 3.0
        frames.append(
            pl.DataFrame(
                {"session_id": sid, "t_s": t, "distance_m": 3.0 * (t - t0), "speed_mps": 3.0}
            )
        )
    starts = pl.DataFrame(
        {
            "session_id": ids,
            "start_s": START + np.arange(n) * 10_000.0,
            "end_s": START + np.arange(n) * 10_000.0 + 100.0,
        }
    ).sample(fraction=1.0, shuffle=True, seed=1)
    cleaned = clean_samples(pl.concat(frames).lazy(), starts.lazy()).collect()
    first = cleaned.group_by("session_id").agg(pl.col("t_s").min(), pl.col("distance_m").min())
    expected = first.join(starts, on="session_id")
    assert expected.height == n
    assert (expected["t_s"] == expected["start_s"]).all()
    assert (expected["distance_m"] == 0.0).all()


def measure_with(cleaned: pl.DataFrame, laps: pl.DataFrame) -> pl.DataFrame:
    return interval_metrics(cleaned.lazy(), laps.lazy()).collect()


def test_real_pool_swim_first_lap_starts_from_zero_at_the_session_start(fixtures):
    """A pool swim records only at the end of each 25 m length, so the first record comes
    33 s after the session start; the device's totals are the truth (lap 0: 100 m, the swim:
    800 m). Holding the first record back to the start made lap 0 75 m and the swim 775 m.
    (Inside the swim the records cannot tell a rest from a slow length: the lengths between
    are spread over both, so rest laps get a few metres; the totals stay right.)"""
    from pipelines.fit.decode import decode_fit

    decoded = decode_fit((fixtures / "fit" / "activity_424479793.fit").read_bytes())
    epoch = lambda c: pl.col(c).dt.epoch("ms") / 1000  # noqa: E731
    records = decoded.records.select(
        pl.lit("swim").alias("session_id"),
        epoch("time_utc").alias("t_s"),
        "distance_m",
        "speed_mps",
    )
    session = decoded.sessions.row(0, named=True)
    start = session["start_time_utc"].timestamp()
    end = start + session["total_elapsed_time_s"]
    starts = pl.LazyFrame({"session_id": ["swim"], "start_s": [start], "end_s": [end]})
    assert records["t_s"].min() > start + 30
    laps = decoded.laps.select(
        pl.lit("swim").alias("session_id"),
        pl.lit("lap").alias("kind"),
        pl.col("lap_index").alias("interval_index"),
        epoch("start_time_utc").alias("start_s"),
        (epoch("start_time_utc") + pl.col("total_elapsed_time_s")).alias("end_s"),
        "total_distance_m",
    )
    spans = laps.drop("total_distance_m")
    out = measure_with(clean_samples(records.lazy(), starts).collect(), spans)
    assert out["distance_m"][0] == pytest.approx(laps["total_distance_m"][0], abs=1.0)
    assert out["distance_m"].sum() == pytest.approx(session["total_distance_m"], abs=1.0)
    held = measure_with(clean_samples(records.lazy()).collect(), spans)  # no session start
    assert held["distance_m"][0] == pytest.approx(75.0, abs=1.0)


def test_records_split_across_one_instant_are_merged_field_by_field(fixtures):
    """The Strava Android app writes each instant as two records, one with speed, one with
    distance. Keeping only the last record of an instant lost every speed; merged, each
    instant has both (and a later null never erases an earlier value)."""
    from pipelines.fit.decode import decode_fit

    name = "strava-android-app-201.10-b1218918.fit"
    decoded = decode_fit((fixtures / "fit" / name).read_bytes())
    epoch = pl.col("time_utc").dt.epoch("ms") / 1000
    records = decoded.records.select(
        pl.lit("s").alias("session_id"), epoch.alias("t_s"), "distance_m", "speed_mps"
    )
    assert records["t_s"].is_duplicated().sum() > 400  # the split is really there
    cleaned = clean_samples(records.lazy()).collect()
    assert cleaned["t_s"].is_unique().all()
    both = cleaned.filter(pl.col("distance_m").is_not_null() & pl.col("speed_mps").is_not_null())
    assert both.height >= 230
    at_12s = cleaned.filter(pl.col("t_s") == records["t_s"][0] + 2).row(0, named=True)
    assert (at_12s["distance_m"], at_12s["speed_mps"]) == (3.27, 1.65)


def test_a_nan_at_one_instant_does_not_erase_a_value_delivered_there():
    samples = pl.DataFrame(
        {
            "session_id": "s",
            "t_s": [0.0, 0.0, 5.0],
            "distance_m": [0.0, float("nan"), 15.0],
            "speed_mps": [3.0, float("nan"), 3.0],
        }
    )
    cleaned = clean_samples(samples.lazy()).collect()
    assert cleaned.height == 2
    assert (cleaned["distance_m"][0], cleaned["speed_mps"][0]) == (0.0, 3.0)


def test_indoor_session_gets_distance_from_speed():
    t = np.arange(0.0, 100.0, 2.0)
    samples = pl.DataFrame({"session_id": "s", "t_s": START + t, "speed_mps": 2.5})
    out = measure(samples, laps_frame("s", [(10.0, 50.0)]))
    assert out["distance_m"][0] == pytest.approx(100.0)


def test_real_smart_recorded_laps_match_device_totals(fixtures):
    """Device lap totals (computed from its full-rate data) are the independent truth."""
    from pipelines.fit.decode import decode_fit

    errors = []
    for name in (
        "activity_1378220136.fit",
        "compressed-speed-distance.fit",
        "activity_234979239.fit",
        "2013-02-06-12-11-14.fit",
    ):
        decoded = decode_fit((fixtures / "fit" / name).read_bytes())
        epoch = lambda c: pl.col(c).dt.epoch("ms") / 1000  # noqa: E731
        samples = decoded.records.select(
            pl.lit(name).alias("session_id"), epoch("time_utc").alias("t_s"), "distance_m"
        )
        laps = decoded.laps.select(
            pl.lit(name).alias("session_id"),
            pl.lit("lap").alias("kind"),
            pl.col("lap_index").alias("interval_index"),
            epoch("start_time_utc").alias("start_s"),
            (epoch("start_time_utc") + pl.col("total_elapsed_time_s")).alias("end_s"),
            "total_distance_m",
        )
        out = measure(samples, laps.drop("total_distance_m")).join(
            laps.select("interval_index", "total_distance_m"), on="interval_index"
        )
        big = out.filter(pl.col("total_distance_m") >= 200)
        errors.extend(
            (
                (big["distance_m"] - big["total_distance_m"]).abs() / big["total_distance_m"]
            ).to_list()
        )
    errors = np.array(errors)
    assert len(errors) >= 20
    assert np.median(errors) < 0.005
    assert np.quantile(errors, 0.95) < 0.02


def test_speed_change_inside_a_gap_is_placed_where_the_speeds_balance_its_distance():
    """A sprint ends between two samples: 11 m/s until 2 s into a 9 s gap, then 4 m/s. The
    device speeds at both samples and the gap's distance put the change at 2 s; the estimate is
    exact outside the speed ramp (the first and last quarter of the gap here) and far closer than
    a straight line at the change itself."""
    t = np.array([0.0, 9.0])

    def truth(x: np.ndarray) -> np.ndarray:
        return 11.0 * np.minimum(x, 2.0) + 4.0 * np.clip(x - 2.0, 0.0, None)

    samples = pl.DataFrame(
        {"session_id": "s", "t_s": START + t, "distance_m": truth(t), "speed_mps": [11.0, 4.0]}
    )
    instants = np.array([0.5, 2.0, 6.0, 8.5])
    at = interpolate_at(
        samples.lazy(), pl.LazyFrame({"session_id": "s", "t_s": START + instants})
    ).collect()
    got = at.sort("t_s")["distance_m"].to_numpy()
    expected = truth(instants)
    linear = np.interp(instants, t, truth(t))
    assert got[[0, 2, 3]] == pytest.approx(expected[[0, 2, 3]], abs=1e-9)
    assert abs(got[1] - expected[1]) < 0.2 * abs(linear[1] - expected[1])
    # speeds that cannot explain the gap (both below its mean speed): the straight line
    odd = samples.with_columns(pl.Series("speed_mps", [3.0, 4.0]))
    at = interpolate_at(
        odd.lazy(), pl.LazyFrame({"session_id": "s", "t_s": START + instants})
    ).collect()
    assert at.sort("t_s")["distance_m"].to_numpy() == pytest.approx(linear, abs=1e-9)


def randomized_sessions(seed: int, n_sessions: int = 5) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Smart-recorded sessions with pauses (timer stopped or slowed), gaps, a distance reset,
    missing values (some columns entirely), duplicated and shuffled samples; laps and steps
    (two kinds) with boundaries between samples, on samples, outside the samples, back to back
    or with gaps between them, zero-length and reversed ones, targets; and a session with laps
    but no samples."""
    rng = np.random.default_rng(seed)
    frames, laps = [], []
    for s in range(n_sessions):
        sid = f"s{s}-{rng.integers(1000)}"
        n = int(rng.integers(1, 250))
        gaps = rng.choice(
            [1, 2, 3, 5, 9, 15, 40], size=n, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.05, 0.05]
        )
        gaps = gaps + rng.choice([0.0, 0.5, 0.25], size=n) * (rng.random() < 0.5)
        t = START + s * 1e5 + np.cumsum(gaps)
        speed = np.clip(3 + rng.normal(0, 1, n), 0, None)
        timer_step = gaps.copy()
        pause = rng.random(n) < 0.08
        timer_step[pause] *= rng.choice([0.0, 0.2, 0.6], size=pause.sum())
        distance = np.cumsum(speed * timer_step)
        if rng.random() < 0.3 and n > 10:
            distance[int(rng.integers(5, n)) :] -= distance[4]  # the odometer restarts
        if rng.random() < 0.3:
            distance[0] = np.nan  # a first sample without distance (zero start, or not)
        df = pl.DataFrame(
            {
                "session_id": [sid] * n,
                "t_s": t,
                "distance_m": distance,
                "timer_s": np.cumsum(timer_step),
                "elevation_m": 100 + np.cumsum(rng.normal(0, 1, n)).round(1),
                "hr_bpm": 120.0 + rng.integers(0, 60, n),
                "speed_mps": speed,
                "cadence": 80.0 + rng.integers(0, 20, n),
                "power_w": 200.0 + rng.integers(0, 100, n),
            }
        ).with_columns(pl.col("distance_m").fill_nan(None))
        for c in df.columns[2:]:
            if rng.random() < 0.4:
                share = rng.choice([0.05, 0.3, 1.0], p=[0.5, 0.4, 0.1])
                missing = pl.Series(rng.random(n) < share)
                df = df.with_columns(pl.when(missing).then(None).otherwise(pl.col(c)).alias(c))
        frames.append(df)
        for kind in ("lap", "step")[: int(rng.integers(1, 3))]:
            k = int(rng.integers(1, 8))
            candidates = [rng.uniform(t[0] - 30, t[-1] + 30, k), rng.choice(t, size=min(k, n))]
            marks = np.unique(np.round(np.concatenate(candidates), rng.choice([0, 3])))
            if rng.random() < 0.5:
                spans = list(pairwise(marks))
            else:
                spans = list(zip(marks[0::2], marks[1::2], strict=False))
            named = [(kind, a, b) for a, b in spans]
            # zero-length and reversed: kinds of their own (one kind's intervals never overlap)
            named += [("zero", t[n // 2], t[n // 2]), ("reversed", t[n // 2] + 10, t[n // 2])]
            for j, (name, a, b) in enumerate(named):
                speed_target = rng.random() < 0.5
                laps.append(
                    {
                        "session_id": sid,
                        "kind": f"{name}-{kind}",
                        "interval_index": j,
                        "start_s": float(a),
                        "end_s": float(b),
                        "target_type": rng.choice(["speed", "heart_rate", "open"]),
                        "target_low": rng.uniform(2, 3.5)
                        if speed_target
                        else rng.uniform(120, 150),
                        "target_high": rng.uniform(3.5, 5)
                        if speed_target
                        else rng.uniform(150, 190),
                    }
                )
    laps.append({**laps[0], "session_id": "no-samples"})
    samples = pl.concat(frames)
    duplicates = samples.sample(n=min(20, samples.height), seed=seed)
    shuffled = pl.concat([samples, duplicates]).sample(fraction=1.0, shuffle=True, seed=seed)
    return shuffled, pl.DataFrame(laps)


def assert_same_frames(new: pl.DataFrame, old: pl.DataFrame) -> None:
    """Same schema, rows, nulls, flags and counts; floats within 1e-9 (relative or absolute)."""
    assert new.schema == old.schema
    assert new.height == old.height
    for c in new.columns:
        if new[c].dtype == pl.Float64:
            assert new[c].is_null().to_list() == old[c].is_null().to_list(), c
            got, want = new[c].drop_nulls().to_numpy(), old[c].drop_nulls().to_numpy()
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9), c
        else:
            assert new[c].to_list() == old[c].to_list(), c


@pytest.mark.parametrize("seed", range(12))
def test_array_method_equals_the_previous_polars_method_on_randomized_sessions(seed, monkeypatch):
    """Every column (values, nulls, flags, counts) as the previous implementation (a lazy
    Polars query: sorted stream, join_asof, per-interval group_by) computed it; in one block
    of samples or (odd seeds) in many small ones."""
    from intervals_oracle.previous_query import previous_implementation

    from pipelines.intervals import alignment

    if seed % 2:
        monkeypatch.setattr(alignment, "BLOCK_ROWS", 97)

    previous_clean, previous_metrics, _ = previous_implementation()
    samples, laps = randomized_sessions(seed)
    cleaned = clean_samples(samples.lazy()).collect().sort("session_id", "t_s")
    for intervals in (laps, laps.drop("target_type", "target_low", "target_high")):
        new = interval_metrics(clean_samples(samples.lazy()), intervals.lazy()).collect()
        old = previous_metrics(cleaned.lazy(), intervals.lazy()).collect()
        assert_same_frames(new, old)
        assert new["pause_count"].sum() > 0 or seed % 4  # pauses really occur
    # Cleaning as before, but for the zero-start rule (added after the frozen copy): a first
    # sample without distance reads 0 when the first reading is within reach of the speeds.
    old_cleaned = previous_clean(samples.lazy()).collect().sort("session_id", "t_s")
    first_missing = old_cleaned.select(
        (pl.int_range(pl.len()).over("session_id") == 0) & pl.col("distance_m").is_null()
    ).to_series()
    new_d, old_d = cleaned["distance_m"], old_cleaned["distance_m"]
    changed = (new_d.is_null() != old_d.is_null()) | ((new_d - old_d).abs() > 1e-9).fill_null(False)
    assert not (changed & ~first_missing).any()  # only missing first distances changed …
    assert (cleaned["distance_m"].filter(changed) == 0.0).all()  # … and only to 0 m
    assert_same_frames(cleaned.drop("distance_m"), old_cleaned.drop("distance_m"))


def test_numpy_speed_ramp_is_the_polars_one_bit_for_bit():
    from pipelines.intervals.alignment import speed_ramp_fraction, speed_ramp_fraction_np

    rng = np.random.default_rng(1)
    m = 20_000
    f = np.where(rng.random(m) < 0.2, rng.choice([0.0, 0.25, 0.5, 1.0], m), rng.random(m))
    v0 = rng.choice([0.0, 2.0, 3.0], m) + rng.random(m) * (rng.random(m) < 0.7)
    v1 = rng.choice([0.0, 2.0, 3.0], m) + rng.random(m) * (rng.random(m) < 0.7)
    secant = np.where(rng.random(m) < 0.3, (v0 + v1) / 2, rng.random(m) * 4)
    secant[rng.random(m) < 0.05] = 0.0
    for x in (f, v0, v1, secant):
        x[rng.random(m) < 0.03] = np.nan
    got = speed_ramp_fraction_np(f, v0, v1, secant)
    frame = pl.DataFrame(
        {
            k: pl.Series(v, nan_to_null=True)
            for k, v in {"f": f, "a": v0, "b": v1, "s": secant}.items()
        }
    )
    want = frame.select(
        speed_ramp_fraction(pl.col("f"), pl.col("a"), pl.col("b"), pl.col("s")).alias("x")
    )["x"].to_numpy()
    assert ((got == want) | (np.isnan(got) & np.isnan(want))).all()
    assert (got != f).sum() > 1000  # the ramp was used, not only the straight line


@pytest.mark.parametrize("seed", range(6))
def test_interpolate_at_equals_the_previous_polars_lookup(seed, monkeypatch):
    """Instants between samples, on samples, outside them and in a session without samples:
    every column as the previous join_asof implementation gave it (rows in the instants'
    order now)."""
    from intervals_oracle.previous_query import previous_implementation

    from pipelines.intervals import alignment

    if seed % 2:
        monkeypatch.setattr(alignment, "BLOCK_ROWS", 53)
    previous_clean, _, previous_interpolate_at = previous_implementation()
    samples, laps = randomized_sessions(seed)
    cleaned = previous_clean(samples.lazy()).collect()
    rng = np.random.default_rng(seed)
    instants = (
        pl.concat(
            [
                laps.select("session_id", pl.col("start_s").alias("t_s")),
                cleaned.select("session_id", "t_s").sample(n=30, seed=seed),
                pl.DataFrame({"session_id": "gone", "t_s": [START]}),
            ]
        )
        .with_columns(pl.col("t_s") + pl.Series(rng.choice([0.0, 0.0, 0.3], size=1)))
        .with_row_index("row")
    )
    new = interpolate_at(cleaned.lazy(), instants.lazy()).collect()
    assert new["row"].to_list() == instants["row"].to_list()
    old = previous_interpolate_at(cleaned.lazy(), instants.lazy()).collect().sort("row")
    assert_same_frames(new, old)
