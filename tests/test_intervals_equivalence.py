"""The interval alignment against its frozen oracle (tests/intervals_oracle/), every column.

Hypothesis draws small sessions the way devices and APIs deliver them: irregular gaps (whole,
half and odd fractions of seconds), pauses where the timer stands still or crawls, distance
resets, values missing here and there or entirely, a first sample without distance, samples
delivered twice or out of order, sessions without samples; and intervals of two kinds with
boundaries on samples, between them, outside them, zero-length and reversed, with or without
targets and device lap totals. The product (clean_samples, interval_metrics, interpolate_at)
must give what the oracle gives: floats within 1e-9 (relative or absolute), nulls, flags and
counts exactly. The oracle is a frozen copy of the product taken before issue #16's work, so
any later rewrite (Polars expressions, other kernels) is held to today's semantics.

The speed benchmark's Polars-expression candidate (``polars_candidate`` in
benchmarks/interval_speed.py) is held to the same oracle for the columns it computes, so the
speeds it is measured at are for correct results.
"""

from __future__ import annotations

from itertools import pairwise

import intervals_oracle as oracle
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_intervals import START, assert_same_frames, randomized_sessions

from pipelines.intervals import clean_samples, interpolate_at, interval_metrics

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALUES = ("distance_m", "timer_s", "elevation_m", "hr_bpm", "speed_mps", "cadence", "power_w")


@st.composite
def session(draw, name: str, offset: float) -> pl.DataFrame:
    n = draw(st.integers(min_value=1, max_value=40))
    gaps = draw(
        st.lists(
            st.sampled_from([1.0, 1.0, 2.0, 3.0, 0.5, 4.25, 9.0, 40.0]), min_size=n, max_size=n
        )
    )
    t = START + offset + np.cumsum(gaps)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    timer_step = np.array(gaps) * np.where(rng.random(n) < 0.15, rng.choice([0.0, 0.3], n), 1.0)
    speed = np.clip(3 + rng.normal(0, 1, n), 0, None)
    distance = np.cumsum(speed * timer_step)
    if draw(st.booleans()) and n > 6:
        distance[draw(st.integers(3, n - 1)) :] -= distance[2]  # the odometer restarts
    columns = {
        "distance_m": distance,
        "timer_s": np.cumsum(timer_step),
        "elevation_m": 100 + np.cumsum(rng.normal(0, 1, n)).round(1),
        "hr_bpm": 120.0 + rng.integers(0, 60, n),
        "speed_mps": speed,
        "cadence": 80.0 + rng.integers(0, 20, n),
        "power_w": 200.0 + rng.integers(0, 100, n),
    }
    frame = pl.DataFrame({"session_id": [name] * n, "t_s": t, **columns})
    for c in VALUES:
        share = draw(st.sampled_from([0.0, 0.0, 0.2, 1.0]))
        missing = pl.Series(rng.random(n) < share)
        frame = frame.with_columns(pl.when(missing).then(None).otherwise(pl.col(c)).alias(c))
    if draw(st.booleans()):
        first = pl.int_range(pl.len()) == 0
        frame = frame.with_columns(
            pl.when(first).then(None).otherwise(pl.col("distance_m")).alias("distance_m")
        )
    return frame


@st.composite
def spans(draw, name: str, t: np.ndarray, with_targets: bool, with_device: bool) -> list[dict]:
    rows = []
    for kind in draw(st.sampled_from([["lap"], ["lap", "step"]])):
        marks = draw(
            st.lists(
                st.one_of(
                    st.sampled_from(list(t)),  # on a sample
                    st.floats(float(t[0]) - 20, float(t[-1]) + 20, allow_nan=False),
                ),
                min_size=1,
                max_size=6,
                unique=True,
            )
        )
        marks = sorted(marks)
        pairs = list(pairwise(marks)) or [(marks[0], marks[0] + 5.0)]
        named = [(kind, a, b) for a, b in pairs]
        named += [(f"zero-{kind}", t[len(t) // 2], t[len(t) // 2])]
        named += [(f"reversed-{kind}", t[len(t) // 2] + 3.0, t[len(t) // 2])]
        for j, (label, a, b) in enumerate(named):
            row = {
                "session_id": name,
                "kind": label,
                "interval_index": j,
                "start_s": float(a),
                "end_s": float(b),
            }
            if with_targets:
                kind_of = draw(st.sampled_from(["speed", "heart_rate", "open"]))
                low, high = (2.5, 4.0) if kind_of == "speed" else (130.0, 170.0)
                row |= {"target_type": kind_of, "target_low": low, "target_high": high}
            if with_device:
                row["device_distance_m"] = draw(st.sampled_from([None, 0.0, 100.0, 1000.0]))
            rows.append(row)
    return rows


@st.composite
def inputs(draw) -> tuple[pl.DataFrame, pl.DataFrame]:
    k = draw(st.integers(min_value=1, max_value=3))
    with_targets, with_device = draw(st.booleans()), draw(st.booleans())
    frames, rows = [], []
    for s in range(k):
        name = f"s{s}"
        frame = draw(session(name, s * 1e5))
        frames.append(frame)
        rows += draw(spans(name, frame["t_s"].to_numpy(), with_targets, with_device))
    rows.append({**rows[0], "session_id": "no-samples"})
    samples = pl.concat(frames)
    if draw(st.booleans()):  # delivered twice in part, out of order
        seed = draw(st.integers(0, 1000))
        extra = samples.sample(n=min(5, samples.height), seed=seed)
        samples = pl.concat([samples, extra]).sample(fraction=1.0, shuffle=True, seed=seed)
    return samples, pl.DataFrame(rows)


@PROPERTY
@given(inputs())
def test_product_equals_the_frozen_oracle(drawn):
    samples, intervals = drawn
    new_clean = clean_samples(samples.lazy()).collect()
    old_clean = oracle.clean_samples(samples.lazy()).collect()
    assert_same_frames(new_clean, old_clean)
    new = interval_metrics(clean_samples(samples.lazy()), intervals.lazy()).collect()
    old = oracle.interval_metrics(oracle.clean_samples(samples.lazy()), intervals.lazy()).collect()
    assert_same_frames(new, old)
    instants = intervals.select("session_id", pl.col("start_s").alias("t_s"))
    assert_same_frames(
        interpolate_at(new_clean.lazy(), instants.lazy()).collect(),
        oracle.interpolate_at(old_clean.lazy(), instants.lazy()).collect(),
    )


@PROPERTY
@given(inputs())
def test_product_equals_the_frozen_oracle_with_session_starts(drawn):
    samples, _ = drawn
    first = samples.group_by("session_id").agg(pl.col("t_s").min())
    starts = first.select(
        "session_id",
        (pl.col("t_s") - 12.0).alias("start_s"),
        (pl.col("t_s") + 1e4).alias("end_s"),
    )
    new = clean_samples(samples.lazy(), starts.lazy()).collect()
    old = oracle.clean_samples(samples.lazy(), starts.lazy()).collect()
    assert_same_frames(new, old)


CANDIDATE_COLUMNS = [
    "session_id",
    "kind",
    "interval_index",
    "elapsed_s",
    "timer_s",
    "distance_m",
    "avg_hr",
    "avg_cadence",
    "avg_power_w",
    "n_samples",
    "start_interpolated",
    "end_interpolated",
    "start_out_of_range",
    "end_out_of_range",
]


@pytest.mark.parametrize("seed", range(8))
def test_benchmark_polars_candidate_equals_the_oracle_on_its_columns(seed):
    from benchmarks.interval_speed import polars_candidate

    samples, laps = randomized_sessions(seed)
    laps = laps.drop("target_type", "target_low", "target_high")
    cleaned = oracle.clean_samples(samples.lazy()).collect()
    old = oracle.interval_metrics(cleaned.lazy(), laps.lazy()).collect()
    new = polars_candidate()(cleaned.lazy(), laps.lazy()).collect()
    assert_same_frames(new.select(CANDIDATE_COLUMNS), old.select(CANDIDATE_COLUMNS))
