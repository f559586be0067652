"""A simulated athlete who runs a planned session the way people and their watches do.

Test and benchmark code, not product code. ``simulate_session`` returns what
``pipelines.plans.simulate.simulate_session`` returns (samples, 1 km auto-laps, true step
boundaries) so its callers keep working; with ``deviations=None`` the athlete follows the
watch as that simulator's does (each step ends at its planned timer time or distance, a 20 s
timer pause early in some recoveries, 1–9 s sample gaps, 1 m GPS noise).

With deviations (``draw_deviations``), one session departs from the plan the way sessions
do, and the departures are kept apart from any detection method:

- people: a warm-up of 50–150 % of plan (strides at its end sometimes) or not recorded at all
  (the watch started at the start line); recoveries ±40 %; standing rests, with the timer
  running, or stopped a few seconds after the rep and restarted a few seconds before the next
  (no samples in between, or, as some exports do, samples with a flat timer); one extra rep,
  one skipped rep, a shortened last rep; fading within reps; all reps run too slow; a
  cool-down of 50–150 %, or the watch stopped after the last rep; speeds that ramp up and
  down over seconds, not in steps; rep lengths that match the plan in true metres (track
  marks), not in the watch's metres;
- devices: GPS distance off by a per-session scale and by correlated noise, with position
  jumps that add distance for good (cumulative distance never falls); GPS speed lagging;
  heart rate lagging effort; a treadmill session (belt ramping between speeds, distance and
  speed from a foot pod with a calibration error and more noise, no GPS); smart recording
  with 1–10 s gaps (longer while standing; none while the timer is stopped).

The truth (``Run.truth``): per planned step the instants it actually started and ended (null
when skipped or not recorded), plus rows for extra reps (``extra``, no step index), and
``Run.deviations`` says what was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
RECOVERY_KINDS = ("recovery", "rest")
STANDING_MODES = ("timer_running", "timer_stopped", "timer_stopped_flat")

# Per-session probability of each drawn departure (the always-on ones have no rate).
RATES = {
    "warmup_unrecorded": 0.15,
    "warmup_strides": 0.2,
    "cooldown_unrecorded": 0.1,
    "standing": 0.3,
    "extra_rep": 0.1,
    "skipped_rep": 0.1,
    "short_last_rep": 0.1,
    "treadmill": 0.1,
    "fading": 0.3,
    "off_target": 0.12,
    "gps_jumps": 0.15,
}
# Smart recording: gap lengths (s) while moving, most short, a tail to 10 s.
GAP_P = np.array([0.2, 0.18, 0.15, 0.12, 0.1, 0.08, 0.06, 0.05, 0.03, 0.03])

TRUTH_SCHEMA = {
    "step_index": pl.Int64(),
    "kind": pl.String(),
    "extra": pl.Boolean(),
    "off_target": pl.Boolean(),
    "true_start_s": pl.Float64(),
    "true_end_s": pl.Float64(),
}


@dataclass
class Deviations:
    """What one session does differently from the plan (the defaults: nothing)."""

    warmup_scale: float = 1.0
    warmup_unrecorded: bool = False
    warmup_strides: int = 0
    cooldown_scale: float = 1.0
    cooldown_open_s: float = 300.0  # how long an open cool-down lasts
    cooldown_unrecorded: bool = False
    recovery_scale: dict[int, float] = field(default_factory=dict)  # by step_index
    standing: str | None = None  # one of STANDING_MODES: how time recoveries are stood
    extra_rep: bool = False
    skipped_rep: int | None = None  # step_index of the work step left out
    short_last_rep: float | None = None  # share of the last work step actually run
    treadmill: bool = False
    fading: float = 0.0  # share of speed lost from the start to the end of each rep
    off_target: float | None = None  # work reps at this share of the target's low end
    gps_jumps: tuple[float, ...] = ()  # metres added by each position jump
    gps_scale: float = 1.0
    reps_by_watch: bool = False  # distance reps run to the watch's metres, not track marks
    gps_noise_m: float = 1.0
    max_gap_s: int = 9
    pause_probability: float = 0.0  # the old simulator's 20 s timer pause in recoveries
    human: bool = False  # ramps, lags and rep-to-rep variation (False: the old simulator)

    def labels(self) -> list[str]:
        """Names of the drawn departures that apply (for reports by deviation type)."""
        out = []
        if self.warmup_unrecorded:
            out.append("warmup_unrecorded")
        if self.warmup_strides:
            out.append("warmup_strides")
        if self.cooldown_unrecorded:
            out.append("cooldown_unrecorded")
        if self.standing:
            out.append(f"standing_{self.standing}")
        for name in ("extra_rep", "treadmill"):
            if getattr(self, name):
                out.append(name)
        for name in ("skipped_rep", "short_last_rep", "off_target"):
            if getattr(self, name) is not None:
                out.append(name)
        if self.fading:
            out.append("fading")
        if self.gps_jumps:
            out.append("gps_jumps")
        return out


def draw_deviations(
    steps: pl.DataFrame, rng: np.random.Generator, rates: dict[str, float] = RATES
) -> Deviations:
    """One session's departures, drawn independently with ``rates``."""
    steps = steps.sort("step_index")
    kinds = steps["kind"].to_list()
    work = [i for i, k in zip(steps["step_index"], kinds, strict=True) if k == "work"]
    has_speed_target = bool(
        steps.filter((pl.col("kind") == "work") & (pl.col("target_type") == "speed")).height
    )
    structured = len(work) >= 2
    hit = {name: bool(rng.random() < p) for name, p in rates.items()}
    treadmill = hit["treadmill"]
    d = Deviations(
        human=True,
        warmup_scale=float(rng.uniform(0.5, 1.5)),
        warmup_unrecorded=hit["warmup_unrecorded"] and "warmup" in kinds and structured,
        cooldown_scale=float(rng.uniform(0.5, 1.5)),
        cooldown_open_s=float(rng.uniform(180, 900)),
        cooldown_unrecorded=hit["cooldown_unrecorded"] and "cooldown" in kinds and structured,
        recovery_scale={
            int(i): float(rng.uniform(0.6, 1.4))
            for i, k in zip(steps["step_index"], kinds, strict=True)
            if k in RECOVERY_KINDS
        },
        extra_rep=hit["extra_rep"] and structured,
        treadmill=treadmill,
        fading=float(rng.uniform(0.04, 0.12)) if hit["fading"] else 0.0,
        gps_scale=1.0 if treadmill else float(rng.uniform(0.975, 1.03)),
        reps_by_watch=bool(rng.random() < 0.5),
        gps_noise_m=float(rng.uniform(1.5, 4.0)),
        max_gap_s=10,
    )
    if "warmup" in kinds and hit["warmup_strides"] and not d.warmup_unrecorded:
        d.warmup_strides = int(rng.integers(2, 5))
    if hit["standing"] and any(k in RECOVERY_KINDS for k in kinds):
        d.standing = str(rng.choice(STANDING_MODES, p=[0.4, 0.4, 0.2]))
    if hit["skipped_rep"] and len(work) >= 3:
        # mostly the last rep (the athlete calls it a day), sometimes one in the middle
        d.skipped_rep = int(work[-1] if rng.random() < 0.6 else rng.choice(work[1:-1]))
    if hit["short_last_rep"] and structured and d.skipped_rep != work[-1]:
        d.short_last_rep = float(rng.uniform(0.5, 0.85))
    if hit["off_target"] and has_speed_target:
        d.off_target = float(rng.uniform(0.82, 0.92))
    if hit["gps_jumps"] and not treadmill:
        d.gps_jumps = tuple(rng.uniform(15, 80, int(rng.integers(1, 4))).round(1).tolist())
    return d


@dataclass
class Run:
    samples: pl.DataFrame
    laps: pl.DataFrame
    truth: pl.DataFrame
    deviations: Deviations
    # the athlete's 1 s truth (relative clock, true speed, true distance, timer), for tests
    t: np.ndarray = field(repr=False, default=None)
    true_distance: np.ndarray = field(repr=False, default=None)
    timer: np.ndarray = field(repr=False, default=None)


# --------------------------------------------------------------------------------------------
# The athlete's stream: ticks appended step by step
# --------------------------------------------------------------------------------------------


class _Stream:
    """Ticks of the true stream: tick k covers (t[k-1], t[k]] at speed v[k]; ``running``:
    the timer runs; ``recording``: the device stores samples; ``standing``: not moving."""

    def __init__(self) -> None:
        self.t, self.v, self.running, self.recording, self.standing = [], [], [], [], []
        self.now = 0.0
        self.timer = 0.0
        self.distance = 0.0
        self.speed = 0.0  # speed at the end of the last tick

    def add(self, tau, v, running=True, recording=True, standing=False) -> None:
        """Ticks at ``now + tau`` (tau rising, its last value the segment's length)."""
        if not len(tau):
            return
        dt = np.diff(np.concatenate([[0.0], tau]))
        self.t.append(self.now + tau)
        self.v.append(v)
        self.running.append(np.full(len(tau), running))
        self.recording.append(np.full(len(tau), recording))
        self.standing.append(np.full(len(tau), standing))
        self.now += float(tau[-1])
        self.distance += float(np.sum(v * dt))
        self.timer += float(tau[-1]) if running else 0.0
        self.speed = float(v[-1])

    def arrays(self):
        cat = lambda xs, dtype=float: (  # noqa: E731
            np.concatenate(xs) if xs else np.zeros(0, dtype)
        )
        t = np.concatenate([[0.0], cat(self.t)])
        v = np.concatenate([[0.0], cat(self.v)])
        running = np.concatenate([[True], cat(self.running, bool)])
        recording = np.concatenate([[True], cat(self.recording, bool)])
        standing = np.concatenate([[False], cat(self.standing, bool)])
        dt = np.diff(t, prepend=0.0)
        return (
            t,
            v,
            np.cumsum(v * dt),
            np.cumsum(dt * running),
            running,
            recording,
            standing,
        )


def _ticks(length: float) -> np.ndarray:
    n = int(np.floor(length + 1e-9))
    tau = np.arange(1, n + 1, dtype=float)
    if length - n > 1e-6 or n == 0:
        tau = np.append(tau, length)
    return tau


def _smooth_noise(rng, n: int, sd: float, width: int) -> np.ndarray:
    """Noise with about ``width`` seconds of correlation and standard deviation ``sd``."""
    if sd <= 0 or n == 0:
        return np.zeros(n)
    if width <= 1:
        return rng.normal(0, sd, n)
    e = rng.normal(0, sd, n + width - 1)
    return np.convolve(e, np.ones(width) / np.sqrt(width), "valid")


def _move(
    s: _Stream,
    rng,
    goal: float,
    measure: str,
    amount: float,
    d: Deviations,
    fade: float = 0.0,
    ramp_s: float = 0.0,
    running: bool = True,
) -> None:
    """Run ``amount`` seconds (measure "time") or true metres ("distance") at ``goal`` m/s,
    starting from the current speed: a ramp of ``ramp_s``, a linear fade of ``fade``
    (faster first, same mean), noise."""
    goal = max(goal, 0.5)
    if measure == "distance":
        expected = amount / goal
        n = int(expected * 1.6) + 60
    else:
        expected = amount
        n = int(np.ceil(amount)) + 1
    tau = np.arange(1, n + 1, dtype=float)
    base = goal * (1 + fade / 2 - fade * np.minimum(tau / max(expected, 1.0), 1.2))
    if ramp_s > 0:
        w = np.clip(tau / ramp_s, 0.0, 1.0)
        base = s.speed * (1 - w) + base * w
    if d.human:
        noise = _smooth_noise(rng, n, 0.06 if not d.treadmill else 0.02, 5)
        v = np.maximum(base + noise, 0.3)
    else:
        v = np.maximum(base + rng.normal(0, 0.08, n), 0.5)
    if measure == "distance":
        covered = np.cumsum(v)
        k = int(np.searchsorted(covered, amount))
        before = covered[k - 1] if k else 0.0
        end = k + (amount - before) / v[k]
        tau = np.append(tau[:k], end) if end > k + 1e-6 else tau[:k]
        v = v[: len(tau)]
    else:
        tau = _ticks(amount)
        v = v[: len(tau)]
    s.add(tau, v, running=running)


def _stand(s: _Stream, seconds: float, running=True, recording=True) -> None:
    tau = _ticks(seconds)
    s.add(tau, np.zeros(len(tau)), running=running, recording=recording, standing=True)


def _slow_down(s: _Stream, rng, seconds: float) -> None:
    """Decelerate from the current speed to a stand."""
    tau = _ticks(seconds)
    v = s.speed * np.clip(1 - tau / seconds, 0, 1)
    s.add(tau, v)


def _speed_goal(step: dict, rng, ability: float, d: Deviations, position: float) -> float:
    if step["target_type"] == "speed" and step["target_low"]:
        lo, hi = step["target_low"], step["target_high"]
        if d.off_target is not None and step["kind"] == "work":
            return lo * d.off_target
        if not d.human:
            return max(float(rng.uniform(lo, hi)), 1.5)
        # the athlete's own place in the range, varying a little from rep to rep
        p = float(np.clip(position + rng.normal(0, 0.12), 0.05, 0.95))
        return lo + p * (hi - lo)
    base = EASY_SPEED.get(step["kind"], 3.0)
    if not d.human:
        return max(base * float(rng.uniform(0.9, 1.1)), 1.5)
    return base * ability


def _executed(steps: list[dict], d: Deviations) -> list[dict]:
    """The steps in the order the athlete ran them, with extra reps inserted and skipped or
    unrecorded ones left out (each marked with what happened to it)."""
    out = []
    work = [s for s in steps if s["kind"] == "work"]
    last_work = work[-1]["step_index"] if work else None
    for step in steps:
        i = step["step_index"]
        if d.skipped_rep is not None and i == d.skipped_rep:
            continue
        if d.skipped_rep is not None and i == d.skipped_rep + 1 and step["kind"] in RECOVERY_KINDS:
            continue  # the skipped rep's own recovery goes with it
        if d.warmup_unrecorded and step["kind"] == "warmup" and not out:
            continue
        out.append({**step, "extra": False})
    if d.cooldown_unrecorded and out and out[-1]["kind"] == "cooldown":
        out.pop()
    if d.extra_rep and last_work is not None:
        # One more rep after the last, copied from it with the recovery the plan gives it:
        # "… W R W+ R+ cool-down" when the last rep has a recovery, "… W R+ W+ cool-down"
        # when it goes straight into the cool-down.
        rep = next(s for s in steps if s["step_index"] == last_work)
        recs = [s for s in steps if s["kind"] in RECOVERY_KINDS]
        at = max(k for k, s in enumerate(out) if s["kind"] == "work")
        if not recs:
            insert = [{**rep, "extra": True}]
        elif at + 1 < len(out) and out[at + 1]["kind"] in RECOVERY_KINDS:
            at += 1
            insert = [{**rep, "extra": True}, {**out[at], "extra": True}]
        else:
            insert = [{**recs[-1], "extra": True}, {**rep, "extra": True}]
        out[at + 1 : at + 1] = insert
    return out


def simulate_run(
    steps: pl.DataFrame,
    session_id: str,
    start_s: float,
    rng: np.random.Generator,
    deviations: Deviations | None = None,
    pause_probability: float = 0.3,
    gps_noise_m: float = 1.0,
) -> Run:
    """One planned session (its unrolled steps) as run and recorded."""
    d = deviations or Deviations(pause_probability=pause_probability, gps_noise_m=gps_noise_m)
    plan = steps.sort("step_index").to_dicts()
    s = _Stream()
    ability = float(rng.uniform(0.9, 1.1))
    position = float(rng.uniform(0.2, 0.8))
    work_steps = [p for p in plan if p["kind"] == "work"]
    last_work = work_steps[-1]["step_index"] if work_steps else None
    rows = []
    executed = _executed(plan, d)
    if d.warmup_unrecorded:
        # the watch starts at the start line: a few seconds standing or walking
        _stand(s, float(rng.uniform(5, 45)))
    for step in executed:
        kind = step["kind"]
        start = s.now
        goal = _speed_goal(step, rng, ability, d, position)
        measure = step["duration_type"]
        amount = step["planned_distance_m"] if measure == "distance" else step["planned_duration_s"]
        if measure == "open" or amount is None:
            measure, amount = "time", (d.cooldown_open_s if kind == "cooldown" else 300.0)
            if d.human and kind != "cooldown":
                amount *= float(rng.uniform(0.7, 1.5))
        elif kind == "warmup":
            amount *= d.warmup_scale
        elif kind == "cooldown":
            amount *= d.cooldown_scale
        elif kind in RECOVERY_KINDS and d.human:
            amount *= d.recovery_scale.get(step["step_index"], 1.0)
        elif kind == "work" and d.human:
            last = step["step_index"] == last_work and not step["extra"]
            if d.short_last_rep is not None and last:
                amount *= d.short_last_rep
            if measure == "time":
                amount += float(rng.normal(0, 1.0))  # a glance at the watch, a late press
            elif d.reps_by_watch:
                amount /= d.gps_scale
        ramp = 0.0
        if d.human:
            # belts take longer to change speed than legs do
            ramp = float(rng.uniform(6, 12)) if d.treadmill else float(rng.uniform(2, 5))
        standing = d.human and (goal == 0.0 or d.standing is not None)
        if kind in RECOVERY_KINDS and standing and measure == "time":
            _recovery_standing(s, rng, amount, d)
        elif kind in RECOVERY_KINDS and not d.human and d.pause_probability:
            _recovery_old(s, rng, goal, measure, amount, d)
        else:
            fade = d.fading if kind == "work" else 0.0
            _move(s, rng, goal, measure, amount, d, fade=fade, ramp_s=ramp)
            if kind == "warmup" and d.warmup_strides:
                for _ in range(d.warmup_strides):
                    _move(s, rng, goal * 1.45, "time", float(rng.uniform(12, 20)), d, ramp_s=4)
                    _move(s, rng, goal * 0.6, "time", float(rng.uniform(30, 60)), d, ramp_s=5)
        rows.append(
            {
                "step_index": None if step["extra"] else step["step_index"],
                "kind": kind,
                "extra": step["extra"],
                "off_target": d.off_target is not None and kind == "work",
                "true_start_s": start_s + start,
                "true_end_s": start_s + s.now,
            }
        )
    if d.human:
        _stand(s, float(rng.uniform(1, 4)))  # the stop button, a breath after the line
    ran = {r["step_index"] for r in rows if r["step_index"] is not None}
    for p in plan:
        if p["step_index"] not in ran:
            rows.append(
                {
                    "step_index": p["step_index"],
                    "kind": p["kind"],
                    "extra": False,
                    "off_target": False,
                    "true_start_s": None,
                    "true_end_s": None,
                }
            )
    # in the order run, then the planned steps that were not run (or not recorded)
    truth_frame = pl.DataFrame(rows, schema=TRUTH_SCHEMA)
    return _record(s, session_id, start_s, rng, d, truth_frame)


def _recovery_standing(s: _Stream, rng, seconds: float, d: Deviations) -> None:
    """A standing rest of ``seconds`` on the clock: slow down, stand (timer running, or
    stopped a few seconds in and restarted a few seconds before the next rep)."""
    slow = min(float(rng.uniform(3, 7)) if d.human else 0.0, seconds / 3)
    if slow > 0:
        _slow_down(s, rng, slow)
    rest = seconds - slow
    if d.standing in ("timer_stopped", "timer_stopped_flat") and rest > 15:
        press = float(rng.uniform(1, 6))  # stop pressed after catching breath
        restart = float(rng.uniform(1, 4))  # start pressed before the next rep
        _stand(s, press)
        _stand(s, rest - press - restart, running=False, recording=d.standing.endswith("flat"))
        _stand(s, restart)
    else:
        _stand(s, rest)


def _recovery_old(s: _Stream, rng, goal, measure, amount, d: Deviations) -> None:
    """The old simulator's recovery: sometimes a 20 s timer pause 10 s in (clock runs,
    samples keep coming with a flat timer), the step ending at its planned timer time."""
    if measure != "time" or rng.random() >= d.pause_probability or amount <= 10:
        _move(s, rng, goal, measure, amount, d)
        return
    _move(s, rng, goal, "time", 10.0, d)
    _stand(s, 20.0, running=False, recording=True)
    _move(s, rng, goal, "time", amount - 10.0, d)


# --------------------------------------------------------------------------------------------
# The device: what it records of the stream
# --------------------------------------------------------------------------------------------


def _kept_seconds(t_end: float, rng, d: Deviations, recording_at, standing_at) -> np.ndarray:
    """Whole seconds (from 0) at which smart recording stores a sample."""
    n = int(np.floor(t_end))
    if d.human:
        p = GAP_P[: d.max_gap_s] / GAP_P[: d.max_gap_s].sum()
        gaps = rng.choice(np.arange(1, d.max_gap_s + 1), size=n + 1, p=p)
    else:
        gaps = rng.integers(1, d.max_gap_s + 1, n + 1)
    kept = np.cumsum(np.concatenate([[0], gaps]))
    kept = kept[kept <= n].astype(float)
    rec = recording_at(kept)
    stand = standing_at(kept)
    if d.human:
        # standing still changes nothing a smart recorder watches: most samples are skipped
        rec &= ~stand | (rng.random(len(kept)) < 0.3)
    kept = kept[rec]
    return kept


def _record(
    s: _Stream, session_id: str, start_s: float, rng, d: Deviations, truth: pl.DataFrame
) -> Run:
    t, v, dist, timer, running, recording, standing = s.arrays()
    end = t[-1]
    # state of the tick containing an instant
    tick_of = lambda x: np.clip(np.searchsorted(t, x, side="left"), 1, len(t) - 1)  # noqa: E731
    kept = _kept_seconds(
        end,
        rng,
        d,
        lambda x: recording[tick_of(x)] | (x == 0),
        lambda x: standing[tick_of(x)],
    )
    # timer start/stop instants are recorded, as are the first and last instants
    change = np.diff(running.astype(np.int8))
    stops, starts = t[np.flatnonzero(change < 0)], t[np.flatnonzero(change > 0)]
    # the last sample: at the stop button (a whole second for a person, who stands a moment;
    # the exact end for the old simulator, whose last step ends the recording)
    last = np.floor(end) if d.human else end
    kept = np.unique(np.concatenate([kept, np.floor(stops), np.ceil(starts), [0.0, last]]))
    kept = kept[(kept >= 0) & (kept <= end)]
    # 1 s device streams (auto-laps use every second, not only the stored ones)
    grid = np.unique(np.append(np.arange(0.0, np.floor(end) + 1), end))
    true_d = np.interp(grid, t, dist)
    v_grid = np.interp(grid, t, v)
    if d.treadmill:
        calib = float(rng.uniform(0.93, 1.07))
        pod = np.maximum(
            v_grid * calib + _smooth_noise(rng, len(grid), 0.12, 3) * (v_grid > 0), 0.0
        )
        device_d = np.cumsum(np.concatenate([[0.0], pod[1:]]))
        device_v = pod
    else:
        if d.human:
            noise = _smooth_noise(rng, len(grid), d.gps_noise_m, 15)
            device_d = true_d * d.gps_scale + noise
            if d.gps_jumps:
                at = rng.choice(np.arange(30, max(len(grid) - 30, 31)), len(d.gps_jumps))
                for where, size in zip(at, d.gps_jumps, strict=True):
                    device_d[where:] += size
            lagged = np.interp(grid - 2.0, t, v)
            device_v = np.maximum(lagged + _smooth_noise(rng, len(grid), 0.1, 3), 0.0)
        else:
            device_d = true_d + rng.normal(0, d.gps_noise_m, len(grid))
            device_v = v_grid
        device_d = np.maximum.accumulate(np.clip(device_d, 0, None))
    idx = np.searchsorted(grid, kept)
    if d.human:
        effort = np.where(v_grid > 0.2, 95 + 20 * v_grid, 85.0)
        width = 120
        kernel = np.exp(-np.arange(width) / 25.0)
        padded = np.concatenate([np.full(width - 1, effort[0]), effort])
        hr = np.convolve(padded, kernel / kernel.sum(), "valid")
        hr = np.round(hr + rng.normal(0, 1.0, len(hr)))
    else:
        hr = 120 + 15 * v_grid
    samples = pl.DataFrame(
        {
            "session_id": session_id,
            "t_s": start_s + kept,
            "distance_m": device_d[idx],
            "timer_s": np.interp(kept, t, timer),
            "speed_mps": device_v[idx],
            "hr_bpm": hr[idx],
        }
    )
    laps = auto_laps(session_id, start_s, grid, device_d, end)
    return Run(samples, laps, truth, d, t=t, true_distance=dist, timer=timer)


def auto_laps(session_id: str, start_s: float, t, device_d, end: float) -> pl.DataFrame:
    """Laps every 1 km of the device's distance: splits, not structure."""
    marks = np.arange(1000.0, device_d[-1], 1000.0)
    lap_t = np.interp(marks, device_d, t) if len(marks) else np.zeros(0)
    lap_starts = np.concatenate([[0.0], lap_t])
    lap_ends = np.concatenate([lap_t, [end]])
    lengths = np.diff(np.concatenate([[0.0], marks, [device_d[-1]]]))
    return pl.DataFrame(
        {
            "session_id": session_id,
            "kind": "lap",
            "interval_index": np.arange(len(lap_starts)),
            "start_s": start_s + lap_starts,
            "end_s": start_s + lap_ends,
            "lap_trigger": "distance",
            "wkt_step_index": pl.Series([None] * len(lap_starts), dtype=pl.Int64),
            "distance_m": lengths,
            "device_distance_m": lengths,
        }
    )


def simulate_session(
    steps: pl.DataFrame,
    session_id: str,
    start_s: float,
    rng: np.random.Generator,
    pause_probability: float = 0.3,
    gps_noise_m: float = 1.0,
    deviations: Deviations | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(samples, auto_laps, true_bounds) as ``pipelines.plans.simulate`` returns them; the
    truth also has rows for extra reps (``extra``, null ``step_index``) and null instants for
    steps not run or not recorded."""
    run = simulate_run(steps, session_id, start_s, rng, deviations, pause_probability, gps_noise_m)
    return run.samples, run.laps, run.truth


def simulate_easy_run(
    duration_s: float,
    session_id: str,
    start_s: float,
    rng: np.random.Generator,
    stops: int | None = None,
) -> Run:
    """An easy run with no structure: a steady effort wandering with the terrain, and a few
    stops at crossings (timer running, or auto-paused)."""
    d = Deviations(human=True, gps_scale=float(rng.uniform(0.975, 1.03)), max_gap_s=10)
    d.gps_noise_m = float(rng.uniform(1.5, 4.0))
    s = _Stream()
    goal = float(rng.uniform(2.5, 3.3))
    n_stops = int(rng.integers(0, 4)) if stops is None else stops
    cuts = np.sort(rng.uniform(0.1, 0.9, n_stops)) * duration_s
    pieces = np.diff(np.concatenate([[0.0], cuts, [duration_s]]))
    auto_pause = bool(rng.random() < 0.5)
    for k, piece in enumerate(pieces):
        tau = _ticks(piece)
        # terrain: slow swings of ±6 % over minutes, plus breathing-scale noise
        period = float(rng.uniform(240, 900))
        phase = float(rng.uniform(0, 2 * np.pi))
        w = np.clip(tau / 4.0, 0, 1)
        base = goal * (1 + 0.06 * np.sin(2 * np.pi * (s.now + tau) / period + phase))
        v = np.maximum(s.speed * (1 - w) + base * w + _smooth_noise(rng, len(tau), 0.08, 7), 0.3)
        s.add(tau, v)
        if k < len(pieces) - 1:
            _slow_down(s, rng, float(rng.uniform(3, 6)))
            _stand(s, float(rng.uniform(10, 60)), running=not auto_pause, recording=True)
    truth = pl.DataFrame(schema=TRUTH_SCHEMA)
    return _record(s, session_id, start_s, rng, d, truth)
