"""The simulated athlete (tests/athlete.py): truth consistent with what it recorded,
deviations applied as drawn, reproducible by seed."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipelines.plans.model import frames
from pipelines.plans.native import parse_native_plan
from tests.athlete import (
    RATES,
    Deviations,
    draw_deviations,
    simulate_easy_run,
    simulate_run,
    simulate_session,
)

PLAN = b"""
sessions:
  - date: 2026-04-01
    intervals:
      - {kind: warmup, duration: 10min}
      - repeat: 5
        intervals:
          - {kind: work, distance: 400m, pace: "3:50-4:05/km"}
          - {kind: recovery, duration: 90s}
      - {kind: work, duration: 3min, pace: "4:00-4:10/km"}
      - {kind: cooldown, duration: 8min}
"""


@pytest.fixture(scope="module")
def steps() -> pl.DataFrame:
    return frames("u", parse_native_plan(PLAN, "plan.yaml", "u"))[1]


def _at(run, instants):
    """The athlete's true distance and timer at instants (relative clock)."""
    return np.interp(instants, run.t, run.true_distance), np.interp(instants, run.t, run.timer)


def _spans(run, start_s):
    ran = run.truth.filter(pl.col("true_start_s").is_not_null())
    return ran, ran["true_start_s"].to_numpy() - start_s, ran["true_end_s"].to_numpy() - start_s


def test_without_deviations_steps_end_at_their_planned_size(steps):
    run = simulate_run(steps, "a", 1000.0, np.random.default_rng(1), pause_probability=0.0)
    ran, start, end = _spans(run, 1000.0)
    assert ran["step_index"].to_list() == list(range(steps.height))
    planned = steps.sort("step_index")
    d0, m0 = _at(run, start)
    d1, m1 = _at(run, end)
    is_distance = (planned["duration_type"] == "distance").to_numpy()
    assert (d1 - d0)[is_distance] == pytest.approx(
        planned["planned_distance_m"].to_numpy()[is_distance]
    )
    assert (m1 - m0)[~is_distance] == pytest.approx(
        planned["planned_duration_s"].to_numpy()[~is_distance]
    )
    assert np.all(start[1:] == end[:-1])  # steps follow each other
    # the recorded stream agrees with the truth: timer and distance at the truth instants
    s = run.samples
    assert s.columns == ["session_id", "t_s", "distance_m", "timer_s", "speed_mps", "hr_bpm"]
    t = s["t_s"].to_numpy() - 1000.0
    assert np.interp(end, t, s["timer_s"].to_numpy()) == pytest.approx(m1, abs=1e-6)
    assert np.interp(end, t, s["distance_m"].to_numpy()) == pytest.approx(d1, abs=6.0)
    gaps = np.diff(t)
    assert gaps.min() > 0 and gaps.max() <= 9


def test_old_three_tuple_and_recovery_pauses(steps):
    samples, laps, truth = simulate_session(steps, "a", 0.0, np.random.default_rng(2), 1.0)
    assert set(laps["lap_trigger"]) == {"distance"}
    assert laps["distance_m"][:-1].to_list() == pytest.approx([1000.0] * (laps.height - 1))
    # a 20 s pause in every recovery: the clock runs on, the timer does not
    rec = truth.filter(pl.col("kind") == "recovery")
    assert (rec["true_end_s"] - rec["true_start_s"]).to_list() == pytest.approx([110.0] * 5)
    assert samples["timer_s"].max() < samples["t_s"].max() - 5 * 20 + 1


def test_deviations_are_applied_as_drawn(steps):
    d = Deviations(
        human=True,
        warmup_scale=0.6,
        recovery_scale={2: 0.6, 4: 1.4, 6: 1.0, 8: 1.2, 10: 0.8},
        standing="timer_stopped",
        extra_rep=True,
        skipped_rep=5,
        short_last_rep=0.5,
        gps_scale=1.02,
        max_gap_s=10,
    )
    run = simulate_run(steps, "a", 0.0, np.random.default_rng(3), d)
    truth = run.truth
    by_step = {r["step_index"]: r for r in truth.iter_rows(named=True) if not r["extra"]}
    length = lambda r: r["true_end_s"] - r["true_start_s"]  # noqa: E731
    assert length(by_step[0]) == pytest.approx(600 * 0.6, abs=1.0)
    # a standing recovery lasts its scaled size on the clock
    assert length(by_step[2]) == pytest.approx(90 * 0.6, abs=1e-6)
    assert length(by_step[4]) == pytest.approx(90 * 1.4, abs=1e-6)
    assert by_step[5]["true_start_s"] is None and by_step[6]["true_start_s"] is None
    # the last work step (3 min) run for half its time; an extra rep (and recovery) after it
    assert length(by_step[11]) == pytest.approx(90, abs=4.0)
    extra = truth.filter(pl.col("extra"))
    assert extra["kind"].to_list() == ["recovery", "work"]
    assert extra["step_index"].null_count() == 2
    # timer stopped while standing: no samples inside the stop, the timer flat across it
    rest = by_step[4]
    t, timer = run.samples["t_s"].to_numpy(), run.samples["timer_s"].to_numpy()
    inside = (t > rest["true_start_s"] + 14) & (t < rest["true_end_s"] - 5)
    assert not inside.any()
    before = np.searchsorted(t, rest["true_start_s"] + 14) - 1
    assert timer[before + 1] - timer[before] < t[before + 1] - t[before] - 60
    assert set(d.labels()) >= {"extra_rep", "skipped_rep", "standing_timer_stopped"}


def test_warmup_not_recorded_and_treadmill(steps):
    d = Deviations(human=True, warmup_unrecorded=True, treadmill=True, max_gap_s=10)
    run = simulate_run(steps, "a", 0.0, np.random.default_rng(4), d)
    warmup = run.truth.filter(pl.col("step_index") == 0)
    assert warmup["true_start_s"].to_list() == [None]
    first_work = run.truth.filter(pl.col("step_index") == 1)["true_start_s"][0]
    assert 0 < first_work < 60  # the watch started at the start line
    s = run.samples
    # foot pod: the distance is the integral of its own speed (no GPS to disagree with it)
    dt = np.diff(s["t_s"].to_numpy())
    assert (s["distance_m"].diff().drop_nulls().to_numpy() <= dt * s["speed_mps"].max()).all()


def test_gps_jumps_add_distance_for_good(steps):
    base = Deviations(human=True, gps_scale=1.0, gps_noise_m=0.0, max_gap_s=10)
    jumpy = Deviations(human=True, gps_scale=1.0, gps_noise_m=0.0, max_gap_s=10, gps_jumps=(50.0,))
    a = simulate_run(steps, "a", 0.0, np.random.default_rng(5), base)
    b = simulate_run(steps, "a", 0.0, np.random.default_rng(5), jumpy)
    assert b.samples["distance_m"][-1] - a.samples["distance_m"][-1] == pytest.approx(50.0, abs=1)
    assert (b.samples["distance_m"].diff().drop_nulls() >= 0).all()


def test_reproducible_by_seed_and_drawn_at_the_rates(steps):
    def one(seed):
        rng = np.random.default_rng(seed)
        return simulate_run(steps, "a", 0.0, rng, draw_deviations(steps, rng))

    a, b, c = one(7), one(7), one(8)
    assert a.samples.equals(b.samples) and a.truth.equals(b.truth) and a.laps.equals(b.laps)
    assert a.deviations == b.deviations
    assert not a.samples.equals(c.samples)
    drawn = [draw_deviations(steps, np.random.default_rng(k)) for k in range(400)]
    share = np.mean([x.treadmill for x in drawn])
    assert share == pytest.approx(RATES["treadmill"], abs=0.05)
    scales = np.concatenate([list(x.recovery_scale.values()) for x in drawn])
    assert scales.min() >= 0.6 and scales.max() <= 1.4


def test_easy_run_has_no_structure():
    run = simulate_easy_run(2400, "e", 0.0, np.random.default_rng(9), stops=2)
    assert run.truth.height == 0
    t = run.samples["t_s"].to_numpy()
    assert t[-1] >= 2400 and np.diff(t).max() <= 60
    moving = run.samples.filter(pl.col("speed_mps") > 1.5)["speed_mps"]
    assert moving.std() / moving.mean() < 0.15  # one steady effort
