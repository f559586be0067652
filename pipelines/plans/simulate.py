"""An athlete that "runs" a planned session, for ground-truth tests and benchmarks.

The athlete follows the watch: each step ends when its planned timer time or distance is
reached, at a pace inside the step's target (with noise); recoveries may include a pause (timer
stopped). The 1 s truth is then smart-recorded (gaps of 1–9 s), given GPS noise on distance,
and auto-lapped every 1 km — so laps carry no structure and the matcher must cut. The true step
boundaries are returned beside the samples.
"""

from __future__ import annotations

import numpy as np
import polars as pl

EASY_SPEED = {
    "warmup": 2.8,
    "recovery": 2.5,
    "rest": 0.0,
    "cooldown": 2.7,
    "work": 3.6,
    "other": 3.0,
}


def simulate_session(
    steps: pl.DataFrame,
    session_id: str,
    start_s: float,
    rng: np.random.Generator,
    pause_probability: float = 0.3,
    gps_noise_m: float = 1.0,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(samples, auto_laps, true_bounds) for one planned session's unrolled steps."""
    t, timer, distance, speeds = [0.0], [0.0], [0.0], []
    truth = []
    for step in steps.sort("step_index").iter_rows(named=True):
        if step["target_type"] == "speed" and step["target_low"]:
            goal = rng.uniform(step["target_low"], step["target_high"])
        else:
            goal = EASY_SPEED.get(step["kind"], 3.0) * rng.uniform(0.9, 1.1)
        goal = max(goal, 1.5)
        step_start = t[-1]
        timer0, dist0 = timer[-1], distance[-1]
        paused = step["kind"] in ("recovery", "rest") and rng.random() < pause_probability
        pause_at = timer0 + 10.0
        done = False
        while not done:
            # A 20 s pause (clock runs, timer and distance stand still) early in a recovery.
            if paused and timer[-1] >= pause_at:
                for _ in range(20):
                    t.append(t[-1] + 1)
                    timer.append(timer[-1])
                    distance.append(distance[-1])
                    speeds.append(0.0)
                paused = False
            v = max(0.5, goal + rng.normal(0, 0.08))
            dt = 1.0
            if step["duration_type"] in ("time", "open"):
                # an open step (lap button) is run for 5 minutes
                planned = step["planned_duration_s"] or 300.0
                dt = min(dt, timer0 + planned - timer[-1])
                done = timer[-1] + dt >= timer0 + planned - 1e-9
            else:
                remaining = dist0 + step["planned_distance_m"] - distance[-1]
                if v * dt >= remaining:
                    dt, done = remaining / v, True
            t.append(t[-1] + dt)
            timer.append(timer[-1] + dt)
            distance.append(distance[-1] + v * dt)
            speeds.append(v)
        truth.append((step["step_index"], start_s + step_start, start_s + t[-1]))
    t_arr, timer_arr, dist_arr = np.array(t), np.array(timer), np.array(distance)
    speed_arr = np.array([*speeds, speeds[-1]])
    # Smart recording: keep samples 1–9 s apart (plus the first and last).
    keep = np.zeros(len(t_arr), dtype=bool)
    i = 0
    while i < len(t_arr):
        keep[i] = True
        i += int(rng.integers(1, 10))
    keep[-1] = True
    noisy = dist_arr + rng.normal(0, gps_noise_m, len(dist_arr))
    noisy = np.maximum.accumulate(np.clip(noisy, 0, None))
    samples = pl.DataFrame(
        {
            "session_id": session_id,
            "t_s": start_s + t_arr[keep],
            "distance_m": noisy[keep],
            "timer_s": timer_arr[keep],
            "speed_mps": speed_arr[keep],
            "hr_bpm": 120 + 15 * speed_arr[keep],
        }
    )
    # Auto-laps every 1 km: splits, not structure.
    marks = np.arange(1000.0, dist_arr[-1], 1000.0)
    lap_t = np.interp(marks, dist_arr, t_arr)
    lap_starts = np.concatenate([[0.0], lap_t])
    lap_ends = np.concatenate([lap_t, [t_arr[-1]]])
    laps = pl.DataFrame(
        {
            "session_id": session_id,
            "kind": "lap",
            "interval_index": np.arange(len(lap_starts)),
            "start_s": start_s + lap_starts,
            "end_s": start_s + lap_ends,
            "lap_trigger": "distance",
            "wkt_step_index": pl.Series([None] * len(lap_starts), dtype=pl.Int64),
            "distance_m": np.diff(np.concatenate([[0.0], marks, [dist_arr[-1]]])),
            "device_distance_m": np.diff(np.concatenate([[0.0], marks, [dist_arr[-1]]])),
        }
    )
    bounds = pl.DataFrame(truth, schema=["step_index", "true_start_s", "true_end_s"], orient="row")
    return samples, laps, bounds
