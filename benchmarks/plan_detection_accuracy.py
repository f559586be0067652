"""Accuracy of plan matching (``evaluate_plans``) where laps carry no structure.

Two sets, each split into tuning and held-out halves so a detector can be tuned on one half and
judged on the other:

(a) Simulated sessions. ``tests/athlete.py`` runs every structure of
    ``benchmarks/plan_matching_speed.py`` (repeats of 200 m – 1 km, time and distance
    recoveries, a pyramid, tempo, fartlek, open cool-downs) plus ``EXTRA_YAML`` with the
    departures people and devices make (``draw_deviations``: warm-ups of 50–150 % or not
    recorded, recoveries ±40 %, standing rests with and without the timer, extra / skipped /
    shortened reps, treadmill, fading, reps off target, GPS jumps, smart recording 1–10 s).
    Laps are auto-laps every 1 km only. Session ``i`` of a split is drawn from
    ``default_rng([split_seed, i])`` (tuning seed 1001, held-out seed 2002), its structure is
    ``i mod`` the number of structures. Easy runs (no structure) are paired with interval
    plans to see what status they get.
(b) Real sessions: FIT files whose laps were pressed by hand (or ended by a workout's timed
    steps) around an interval session, found in ``--fit-dirs`` by ``find_real_sessions``. Each
    is delivered as Garmin would: records thinned to smart-recording gaps (1 s files only;
    gaps drawn from the simulator's distribution, seeded by the file's sha256), timer from
    the FIT timer events, laps only every 1 km (no trigger, as the Garmin API delivers them).
    The plan is what a coach would have written, derived from the laps by ``derive_plan``
    (the rule is in its docstring; nothing from any detector). Truth: the lap boundaries.
    A file is held out when the first hex digit of its sha256 is 8–f: stable per file, so a
    growing corpus never moves a file between halves.

Samples are cleaned with ``pipelines.intervals.clean_samples`` (as silver samples are) and
matched in one ``evaluate_plans`` call per set.

Reported: the share of work steps whose start and end are both within ±5 s of the truth (and
±10 s);
median / p95 / worst boundary error of work steps (starts and ends; a step not placed counts
as an infinite error); the same per deviation type (sessions carrying it); skipped reps that
were reported as matched; sessions graded green while a work step was skipped or run off
target (must be 0), and, apart, with a shortened last rep; the status and grade of easy runs
paired with interval plans (they should come out ``unstructured``).

How to run (from the repository root)::

    .venv/bin/python -m benchmarks.plan_detection_accuracy [--quick] [--sessions 600]
        [--fit-dirs /work/shared/data/fit,/work/corpus,tests/fixtures/fit] [--out FILE.json]

``--quick`` simulates 100 sessions (50 per split) instead of 600. Deterministic.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.plan_matching_speed import TEMPLATES_YAML  # noqa: E402
from pipelines.intervals import clean_samples  # noqa: E402
from pipelines.plans.matching import evaluate_plans  # noqa: E402
from pipelines.plans.model import frames  # noqa: E402
from pipelines.plans.native import parse_native_plan  # noqa: E402
from tests.athlete import (  # noqa: E402
    GAP_P,
    auto_laps,
    draw_deviations,
    simulate_easy_run,
    simulate_run,
)

TOLERANCE_S = 5.0
SPLITS = {"tuning": 1001, "held_out": 2002}
DEFAULT_FIT_DIRS = ("/work/shared/data/fit", "/work/corpus", str(ROOT / "tests/fixtures/fit"))
DAY0 = date(2026, 4, 6)

# Structures beside the speed benchmark's: standing rests, distance recoveries, mile reps.
EXTRA_YAML = b"""
plan: extra
sport: running
sessions:
  - {date: 2025-01-01, id: 6x800rest, name: 6 x 800 m, intervals: [
      {kind: warmup, duration: 15min},
      {repeat: 6, intervals: [{kind: work, distance: 800m, pace: "3:55-4:05/km"},
                              {kind: rest, duration: 2min}]},
      {kind: cooldown}]}
  - {date: 2025-01-01, id: 400-200, name: 5 x (400 m + 200 m jog), intervals: [
      {kind: warmup, distance: 2km},
      {repeat: 5, intervals: [{kind: work, distance: 400m, pace: "3:45-3:55/km"},
                              {kind: recovery, distance: 200m}]},
      {kind: cooldown, duration: 10min}]}
  - {date: 2025-01-01, id: 3x1mi, name: 3 x 1 mile, intervals: [
      {kind: warmup, duration: 12min},
      {repeat: 3, intervals: [{kind: work, distance: 1mi, pace: "4:10-4:20/km"},
                              {kind: recovery, duration: 3min}]},
      {kind: cooldown, duration: 10min}]}
  - {date: 2025-01-01, id: 5x3min, name: 5 x 3 min, intervals: [
      {kind: warmup, duration: 10min},
      {repeat: 5, intervals: [{kind: work, duration: 3min, pace: "4:05-4:15/km"},
                              {kind: recovery, duration: 2min}]},
      {kind: cooldown, duration: 10min}]}
"""
# The speed benchmark's activities that no plan asks for are not structures to run here.
NOT_PLANS = ("shakeout", "unplanned", "ride")


def templates() -> tuple[pl.DataFrame, pl.DataFrame]:
    """(planned_sessions, planned_steps) of every structure, keyed by ``template``."""
    parts = [
        frames("t", parse_native_plan(raw, name, "t"))
        for raw, name in ((TEMPLATES_YAML, "templates.yaml"), (EXTRA_YAML, "extra.yaml"))
    ]
    planned = pl.concat([p for p, _ in parts])
    steps = pl.concat([s for _, s in parts])
    key = pl.col("planned_session_id").str.split(":").list.last()
    planned = planned.with_columns(key.alias("template")).filter(
        ~pl.col("template").is_in(NOT_PLANS)
    )
    steps = steps.with_columns(key.alias("template")).filter(~pl.col("template").is_in(NOT_PLANS))
    return planned, steps


def _sessions_frame(samples: pl.DataFrame, users: dict[str, str]) -> pl.DataFrame:
    spans = samples.group_by("session_id").agg(
        pl.col("t_s").min().alias("t0"),
        pl.col("t_s").max().alias("t1"),
        pl.col("distance_m").max().alias("distance_m"),
        pl.col("timer_s").max().alias("timer_s"),
    )
    start = pl.from_epoch((pl.col("t0") * 1000).cast(pl.Int64), time_unit="ms")
    return spans.select(
        "session_id",
        pl.col("session_id").replace_strict(users).alias("user_id"),
        pl.lit("running").alias("sport"),
        start.dt.replace_time_zone("UTC").alias("start_time_utc"),
        start.alias("start_time_local"),
        (pl.col("t1") - pl.col("t0")).alias("elapsed_s"),
        "timer_s",
        "distance_m",
    )


def _plan_rows(
    template_sessions: pl.DataFrame,
    template_steps: pl.DataFrame,
    assignments: list[tuple[str, str, str, date]],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Planned sessions and steps for (planned_session_id, user, template, date) rows."""
    plans = pl.DataFrame(
        assignments,
        schema=["planned_session_id", "user_id", "template", "planned_date"],
        orient="row",
    )
    planned = plans.join(
        template_sessions.drop("planned_session_id", "user_id", "planned_date"), on="template"
    ).select(template_sessions.drop("template").columns)
    steps = (
        plans.select("planned_session_id", "template")
        .join(template_steps.drop("planned_session_id"), on="template")
        .drop("template")
        .sort("planned_session_id", "step_index")
    )
    return planned, steps


# --------------------------------------------------------------------------------------------
# (a) simulated sessions
# --------------------------------------------------------------------------------------------


def simulate_split(split: str, n: int, n_easy: int) -> dict:
    """Simulate one split: plans, runs, truth, deviation labels; easy runs beside."""
    t_sessions, t_steps = templates()
    names = t_sessions["template"].to_list()
    structured = t_sessions.filter(pl.col("n_steps") > 2)["template"].to_list()
    seed = SPLITS[split]
    samples, laps, truths, labels, assignments, users = [], [], [], [], [], {}
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        template = names[i % len(names)]
        steps = t_steps.filter(pl.col("template") == template)
        day = DAY0 + timedelta(days=i % 28)
        user, sid = f"{split}-{i:04d}", f"{split}-run-{i:04d}"
        pid = f"{user}:plan:{template}"
        start = datetime(day.year, day.month, day.day, 7, tzinfo=UTC).timestamp()
        start += float(rng.uniform(0, 3600))
        dev = draw_deviations(steps, rng)
        run = simulate_run(steps, sid, start, rng, dev)
        samples.append(run.samples)
        laps.append(run.laps)
        truths.append(run.truth.with_columns(pl.lit(pid).alias("planned_session_id")))
        labels.append({"planned_session_id": pid, "labels": dev.labels(), "template": template})
        assignments.append((pid, user, template, day))
        users[sid] = user
    for j in range(n_easy):
        rng = np.random.default_rng([seed, 1_000_000 + j])
        template = structured[j % len(structured)]
        day = DAY0 + timedelta(days=j % 28)
        user, sid = f"{split}-easy-{j:04d}", f"{split}-easy-run-{j:04d}"
        pid = f"{user}:plan:{template}"
        start = datetime(day.year, day.month, day.day, 18, tzinfo=UTC).timestamp()
        estimate = t_sessions.filter(pl.col("template") == template)["estimated_duration_s"][0]
        # an easy run of about the plan's size, so that session matching pairs them
        run = simulate_easy_run(estimate * float(rng.uniform(0.85, 1.15)), sid, start, rng)
        samples.append(run.samples)
        laps.append(run.laps)
        labels.append({"planned_session_id": pid, "labels": ["easy_run"], "template": template})
        assignments.append((pid, user, template, day))
        users[sid] = user
    planned, steps = _plan_rows(t_sessions, t_steps, assignments)
    cleaned = clean_samples(pl.concat(samples, how="diagonal_relaxed").lazy()).collect()
    return {
        "planned": planned,
        "steps": steps,
        "sessions": _sessions_frame(cleaned, users),
        "samples": cleaned,
        "laps": pl.concat(laps),
        "truth": pl.concat(truths),
        "labels": pl.DataFrame(labels),
    }


def _errors(rows: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Work steps that were run, with their boundary errors (inf where not placed)."""
    epoch = lambda c: pl.col(c).dt.epoch("ms") / 1000  # noqa: E731
    return (
        rows.filter(pl.col("kind") == "work")
        .join(
            truth.filter(pl.col("step_index").is_not_null()).select(
                "planned_session_id", "step_index", "true_start_s", "true_end_s", "off_target"
            ),
            on=["planned_session_id", "step_index"],
        )
        .filter(pl.col("true_start_s").is_not_null())
        .with_columns(
            (epoch("start_time_utc") - pl.col("true_start_s"))
            .abs()
            .fill_null(math.inf)
            .alias("start_error_s"),
            (epoch("end_time_utc") - pl.col("true_end_s"))
            .abs()
            .fill_null(math.inf)
            .alias("end_error_s"),
        )
        .with_columns(
            (
                (pl.col("start_error_s") <= TOLERANCE_S) & (pl.col("end_error_s") <= TOLERANCE_S)
            ).alias("within")
        )
    )


def _summary(errors: pl.DataFrame) -> dict:
    if not errors.height:
        return {"work_steps": 0}
    bounds = np.concatenate([errors["start_error_s"].to_numpy(), errors["end_error_s"].to_numpy()])
    return {
        "work_steps": errors.height,
        "within_5s": float(errors["within"].mean()),
        "within_10s": float(
            ((errors["start_error_s"] <= 10) & (errors["end_error_s"] <= 10)).mean()
        ),
        "median_error_s": float(np.quantile(bounds, 0.5, method="inverted_cdf")),
        "p95_error_s": float(np.quantile(bounds, 0.95, method="inverted_cdf")),
        "worst_error_s": float(bounds.max()),
    }


def score_split(data: dict, matches: pl.DataFrame, rows: pl.DataFrame) -> dict:
    labels = data["labels"]
    truth = data["truth"]
    structured = matches.filter(pl.col("n_steps") > 1).select("planned_session_id")
    runs = labels.filter(~pl.col("labels").list.contains("easy_run"))
    errors = _errors(rows.join(structured, on="planned_session_id"), truth).join(
        labels, on="planned_session_id"
    )
    per_label = {}
    all_labels = sorted({x for ls in runs["labels"].to_list() for x in ls})
    for label in all_labels:
        per_label[label] = _summary(errors.filter(pl.col("labels").list.contains(label)))
    per_label["(none drawn)"] = _summary(errors.filter(pl.col("labels").list.len() == 0))
    # the truth of each run session: skipped / off-target / shortened work
    skipped = (
        truth.filter((pl.col("kind") == "work") & pl.col("true_start_s").is_null())
        .select("planned_session_id", "step_index")
        .join(
            rows.select("planned_session_id", "step_index", "matched"),
            on=["planned_session_id", "step_index"],
        )
    )
    bad = labels.with_columns(
        pl.col("labels").list.contains("skipped_rep").alias("skipped"),
        pl.col("labels").list.contains("off_target").alias("off_target"),
        pl.col("labels").list.contains("short_last_rep").alias("short"),
    ).join(matches.select("planned_session_id", "grade", "status"), on="planned_session_id")
    green = bad.filter(pl.col("grade") == "green")
    easy = bad.filter(pl.col("labels").list.contains("easy_run"))
    return {
        "sessions": runs.height,
        "work": _summary(errors),
        "per_deviation": per_label,
        "skipped_work_steps": skipped.height,
        "skipped_work_steps_reported_matched": int(skipped["matched"].sum()),
        "green_while_skipped": green.filter(pl.col("skipped")).height,
        "green_while_off_target": green.filter(pl.col("off_target")).height,
        "green_while_skipped_or_off_target": green.filter(
            pl.col("skipped") | pl.col("off_target")
        ).height,
        "sessions_skipped_or_off_target": bad.filter(
            pl.col("skipped") | pl.col("off_target")
        ).height,
        "green_while_short_last_rep": green.filter(pl.col("short")).height,
        "sessions_short_last_rep": bad.filter(pl.col("short")).height,
        "statuses": dict(
            runs.join(matches, on="planned_session_id")
            .group_by("status")
            .len()
            .sort("status")
            .iter_rows()
        ),
        "grades": dict(
            runs.join(matches, on="planned_session_id")
            .group_by("grade")
            .len()
            .sort("grade")
            .iter_rows()
        ),
        "easy_runs": easy.height,
        "easy_runs_status": dict(easy.group_by("status").len().sort("status").iter_rows()),
        "easy_runs_grade": dict(easy.group_by("grade").len().sort("grade").iter_rows()),
        "evidence": dict(rows.group_by("evidence").len().sort("evidence").iter_rows()),
    }


def run_simulated(n_per_split: int) -> dict:
    out = {}
    for split in SPLITS:
        t0 = time.perf_counter()
        data = simulate_split(split, n_per_split, max(5, n_per_split // 10))
        t1 = time.perf_counter()
        matches, rows = evaluate_plans(
            data["planned"], data["steps"], data["sessions"], data["samples"], data["laps"]
        )
        t2 = time.perf_counter()
        out[split] = score_split(data, matches, rows) | {
            "simulate_s": round(t1 - t0, 2),
            "evaluate_s": round(t2 - t1, 2),
            "samples": data["samples"].height,
        }
    return out


# --------------------------------------------------------------------------------------------
# (b) real sessions
# --------------------------------------------------------------------------------------------

AUTO_TRIGGERS = (
    "distance",
    "position_start",
    "position_lap",
    "position_waypoint",
    "position_marked",
)
MIN_LAP_S = 10.0


def _fast_laps(speed: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fast (True) / slow laps: at least 80 % of the reference speed, the time-weighted mean
    speed of the fastest laps that make up 10 % of the timer time (the last one in part)."""
    order = np.argsort(-speed, kind="stable")
    budget = 0.1 * weight.sum()
    taken = np.minimum(
        weight[order], np.maximum(budget - np.cumsum(weight[order]) + weight[order], 0)
    )
    reference = float(np.sum(speed[order] * taken) / np.sum(taken))
    return speed >= 0.8 * reference


def merged_steps(laps: pl.DataFrame) -> list[dict] | None:
    """The session's steps from its laps, or None when the laps show no interval structure.

    Rule: laps shorter than 10 s fold into the next lap (the last into the previous); a lap
    is fast when its speed is at least 80 % of the time-weighted mean speed of the fastest
    laps making up 10 % of the session's timer time, else slow; consecutive laps of one
    label are one step (auto-lap splits inside a warm-up or a long rep fold away). A
    session has structure with at least 3 fast steps whose time-weighted mean speed is at
    least 1.15 × that of the slow steps.
    """
    rows = laps.to_dicts()
    folded: list[dict] = []
    carry = None
    for k, lap in enumerate(rows):
        if carry is not None:
            lap = _join_laps(carry, lap)
            carry = None
        if lap["timer_s"] < MIN_LAP_S and k < len(rows) - 1:
            carry = lap
            continue
        if lap["timer_s"] < MIN_LAP_S and folded:
            folded[-1] = _join_laps(folded[-1], lap)
            continue
        folded.append(lap)
    if len(folded) < 4:
        return None
    speed = np.array([r["distance_m"] / max(r["timer_s"], 1e-9) for r in folded])
    weight = np.array([r["timer_s"] for r in folded])
    fast = _fast_laps(speed, weight)
    steps: list[dict] = []
    for lap, f in zip(folded, fast, strict=True):
        if steps and steps[-1]["fast"] == bool(f):
            steps[-1] = _join_laps(steps[-1], lap) | {"fast": bool(f)}
        else:
            steps.append(lap | {"fast": bool(f)})
    n_fast = sum(s["fast"] for s in steps)
    slow = [s for s in steps if not s["fast"]]
    if n_fast < 3 or not slow:
        return None
    v = lambda group: sum(s["distance_m"] for s in group) / sum(s["timer_s"] for s in group)  # noqa: E731
    if v([s for s in steps if s["fast"]]) < 1.15 * v(slow):
        return None
    return steps


def _join_laps(a: dict, b: dict) -> dict:
    return a | {
        "end_s": b["end_s"],
        "timer_s": a["timer_s"] + b["timer_s"],
        "distance_m": a["distance_m"] + b["distance_m"],
        "n_laps": a.get("n_laps", 1) + b.get("n_laps", 1),
    }


def _round(x: float, unit: float, minimum: float) -> float:
    return max(minimum, unit * round(x / unit))


def derive_plan(steps: list[dict]) -> list[dict]:
    """The plan a coach would have written for these steps (native plan intervals).

    Rule (rounding only, from the laps):
    - a slow first step is the warm-up: its timer time to the nearest 5 min (at least 5);
    - a slow last step is the cool-down: to the nearest 5 min when under 12.5 min, else open;
    - fast steps are work. The measure (distance or time) is the one that varies least
      across the reps (coefficient of variation of lap distance vs lap timer time), as a
      coach prescribes one and the athlete runs until it is reached; with fewer than 3
      reps, the one with the smaller relative rounding error. Distances to the nearest
      100 m, times to the nearest 30 s (each rep on its own, so pyramids stay pyramids);
      the target is the reps' median pace rounded to 5 s/km, ±10 s/km;
    - slow steps between are recoveries (``rest`` when slower than 1 m/s): timer time to
      the nearest 30 s (at least 30 s).
    """
    work = [s for s in steps if s["fast"]]
    t = np.array([s["timer_s"] for s in work])
    d = np.array([s["distance_m"] for s in work])
    cv = lambda x: float(np.std(x) / np.mean(x))  # noqa: E731
    by_distance = cv(d) <= cv(t) if len(work) >= 3 else None
    pace = 1000.0 / float(np.median(d / t))
    pace = 5 * round(pace / 5)
    fmt = lambda s: f"{int(s // 60)}:{int(s % 60):02d}"  # noqa: E731
    target = f"{fmt(pace - 10)}-{fmt(pace + 10)}/km"
    out = []
    for k, s in enumerate(steps):
        if not s["fast"] and k == 0:
            out.append({"kind": "warmup", "duration": int(_round(s["timer_s"], 300, 300))})
        elif not s["fast"] and k == len(steps) - 1:
            if s["timer_s"] < 750:
                out.append({"kind": "cooldown", "duration": int(_round(s["timer_s"], 300, 300))})
            else:
                out.append({"kind": "cooldown"})
        elif not s["fast"]:
            kind = "rest" if s["distance_m"] / s["timer_s"] < 1.0 else "recovery"
            out.append({"kind": kind, "duration": int(_round(s["timer_s"], 30, 30))})
        else:
            rd, rt = _round(s["distance_m"], 100, 100), _round(s["timer_s"], 30, 30)
            use_d = by_distance
            if use_d is None:
                use_d = abs(rd - s["distance_m"]) / rd <= abs(rt - s["timer_s"]) / rt
            measure = {"distance": int(rd)} if use_d else {"duration": int(rt)}
            out.append({"kind": "work", **measure, "pace": target})
    return out


def find_real_sessions(dirs: list[Path]) -> list[dict]:
    """Running sessions with hand-pressed (or workout-timed) laps around an interval session.

    A session qualifies when it is running, has at least 4 laps, at least 3 of its laps (and
    half of those not ended by the stop button) are not auto-laps, and ``merged_steps``
    finds structure. Auto-laps: distance/position triggers, and laps without a trigger whose
    distances are mostly (80 %) within 2 % of their median (a fixed-distance auto-lap)."""
    from pipelines.fit.decode import decode_fit

    found, seen = [], set()
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix.lower() != ".fit":
                continue
            raw = path.read_bytes()
            sha = hashlib.sha256(raw).hexdigest()
            if sha in seen:
                continue
            seen.add(sha)
            try:
                decoded = decode_fit(raw)
            except Exception:  # unusable files are not interval sessions
                continue
            for session in decoded.sessions.iter_rows(named=True):
                item = _real_session(decoded, session, path, sha)
                if item is not None:
                    found.append(item)
    return found


def _real_session(decoded, session: dict, path: Path, sha: str) -> dict | None:
    if not (session["sport"] or "").startswith("run") or session["start_time_utc"] is None:
        return None
    start = session["start_time_utc"]
    end = start + timedelta(seconds=session["total_elapsed_time_s"] or 0)
    epoch = lambda c: pl.col(c).dt.epoch("ms") / 1000  # noqa: E731
    laps = (
        decoded.laps.filter(pl.col("start_time_utc").is_between(start, end, closed="left"))
        .sort("start_time_utc")
        .select(
            epoch("start_time_utc").alias("start_s"),
            (epoch("start_time_utc") + pl.col("total_elapsed_time_s")).alias("end_s"),
            pl.col("total_timer_time_s").alias("timer_s"),
            pl.col("total_distance_m").alias("distance_m"),
            "lap_trigger",
        )
    )
    if laps.height < 4 or laps["distance_m"].null_count() or laps["timer_s"].null_count():
        return None
    trigger = laps["lap_trigger"]
    untriggered = laps.filter(pl.col("lap_trigger").is_null())["distance_m"]
    fixed = untriggered.len() >= 3 and bool(
        ((untriggered / untriggered.median() - 1).abs() < 0.02).mean() >= 0.8
    )
    auto = trigger.is_in(AUTO_TRIGGERS).fill_null(fixed)
    ended = trigger == "session_end"
    pressed = (~auto & ~ended.fill_null(False)).sum()
    if pressed < 3 or pressed < 0.5 * (laps.height - ended.fill_null(False).sum()):
        return None
    steps = merged_steps(laps.drop("lap_trigger"))
    if steps is None:
        return None
    return {
        "file": path.name,
        "path": str(path),
        "sha256": sha,
        "session_index": session["session_index"],
        "split": "tuning" if int(sha[0], 16) < 8 else "held_out",
        "steps": steps,
        "plan": derive_plan(steps),
        "start_s": start.timestamp(),
        "end_s": end.timestamp(),
        "decoded": decoded,
        "session": session,
    }


def _timer(t: np.ndarray, event_t: np.ndarray, starts: np.ndarray, t0: float) -> np.ndarray:
    """Timer time since ``t0`` at instants ``t``, from timer start / stop events (running
    from ``t0`` until an event says otherwise; clock time without events)."""
    inside = event_t > t0
    event_t = np.concatenate([[t0], event_t[inside]])
    running = np.concatenate([[True], starts[inside]])
    span = np.diff(event_t, append=event_t[-1])
    at_event = np.concatenate([[0.0], np.cumsum(np.where(running, span, 0.0))[:-1]])
    k = np.clip(np.searchsorted(event_t, t, side="right") - 1, 0, None)
    return at_event[k] + np.where(running[k], t - event_t[k], 0.0)


def deliver(item: dict, session_id: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(samples, laps, sessions) of one real session as the Garmin API would deliver it."""
    decoded, session = item["decoded"], item["session"]
    epoch = lambda c: pl.col(c).dt.epoch("ms") / 1000  # noqa: E731
    records = (
        decoded.records.select(
            pl.lit(session_id).alias("session_id"),
            epoch("time_utc").floor().alias("t_s"),
            "distance_m",
            "speed_mps",
            "hr_bpm",
        )
        .filter(pl.col("t_s").is_between(item["start_s"], item["end_s"]))
        .unique("t_s", keep="last")
        .sort("t_s")
    )
    timer_events = decoded.events.filter(pl.col("event") == "timer").sort("time_utc")
    records = records.with_columns(
        pl.Series(
            "timer_s",
            _timer(
                records["t_s"].to_numpy(),
                (timer_events["time_utc"].dt.epoch("ms") / 1000).to_numpy(),
                (timer_events["event_type"] == "start").to_numpy(),
                item["start_s"],
            ),
        )
    )
    t = records["t_s"].to_numpy()
    # smart recording: thin 1 s files with the simulator's gaps (seeded by the file)
    keep = np.ones(len(t), bool)
    if len(t) > 2 and np.median(np.diff(t)) <= 1.5:
        rng = np.random.default_rng(int(item["sha256"][:16], 16))
        gaps = rng.choice(np.arange(1, len(GAP_P) + 1), size=len(t), p=GAP_P)
        marks = t[0] + np.cumsum(np.concatenate([[0], gaps]))
        keep = np.isin(t, marks)
        keep[[0, -1]] = True
    samples = records.filter(pl.Series(keep))
    d = records["distance_m"].forward_fill().fill_null(0.0).to_numpy()
    t0 = item["start_s"]
    laps = auto_laps(session_id, t0, t - t0, np.maximum.accumulate(d), item["end_s"] - t0)
    laps = laps.with_columns(pl.lit(None, pl.String).alias("lap_trigger"))
    offset = int(decoded.file["utc_offset_s"][0] or 0)
    start = session["start_time_utc"]
    sessions = pl.DataFrame(
        {
            "session_id": [session_id],
            "user_id": [session_id],
            "sport": ["running"],
            "start_time_utc": [start],
            "start_time_local": [start.replace(tzinfo=None) + timedelta(seconds=offset)],
            "elapsed_s": [session["total_elapsed_time_s"]],
            "timer_s": [session["total_timer_time_s"]],
            "distance_m": [session["total_distance_m"]],
        }
    )
    return samples, laps, sessions


def run_real(dirs: list[Path]) -> dict:
    items = find_real_sessions(dirs)
    samples, laps, sessions, truths, plans, steps_frames = [], [], [], [], [], []
    for item in items:
        sid = f"real-{item['sha256'][:8]}-{item['session_index']}"
        item["session_id"] = sid
        s, lap, sess = deliver(item, sid)
        samples.append(s)
        laps.append(lap)
        sessions.append(sess)
        local_day = sess["start_time_local"][0].date()
        doc = {
            "plan": sid,
            "sport": "running",
            "sessions": [{"date": local_day.isoformat(), "id": "s", "intervals": item["plan"]}],
        }
        planned, steps = frames(sid, parse_native_plan(json.dumps(doc).encode(), "p.json", sid))
        plans.append(planned)
        steps_frames.append(steps)
        pid = planned["planned_session_id"][0]
        item["planned_session_id"] = pid
        truths.append(
            pl.DataFrame(
                {
                    "planned_session_id": pid,
                    "step_index": np.arange(len(item["steps"])),
                    "true_start_s": [st["start_s"] for st in item["steps"]],
                    "true_end_s": [st["end_s"] for st in item["steps"]],
                    "off_target": False,
                }
            )
        )
    if not items:
        return {"sessions": []}
    cleaned = clean_samples(pl.concat(samples, how="diagonal_relaxed").lazy()).collect()
    matches, rows = evaluate_plans(
        pl.concat(plans), pl.concat(steps_frames), pl.concat(sessions), cleaned, pl.concat(laps)
    )
    errors = _errors(rows, pl.concat(truths))
    per_session = []
    for item in items:
        e = errors.filter(pl.col("planned_session_id") == item["planned_session_id"])
        m = matches.filter(pl.col("planned_session_id") == item["planned_session_id"]).row(
            0, named=True
        )
        per_session.append(
            {
                "file": item["file"],
                "sha256": item["sha256"],
                "session_index": item["session_index"],
                "split": item["split"],
                "plan": item["plan"],
                "status": m["status"],
                "grade": m["grade"],
                "evidence": m["evidence"],
                **_summary(e),
            }
        )
    return {
        "sessions": per_session,
        "splits": {
            split: _summary(
                errors.join(
                    pl.DataFrame(
                        {
                            "planned_session_id": [
                                i["planned_session_id"] for i in items if i["split"] == split
                            ]
                        },
                        schema={"planned_session_id": pl.String},
                    ),
                    on="planned_session_id",
                )
            )
            for split in SPLITS
        },
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _fmt(s: dict) -> str:
    if not s.get("work_steps"):
        return f"{'0':>6} {'–':>7} {'–':>7} {'–':>8} {'–':>8} {'–':>8}"
    return (
        f"{s['work_steps']:>6} {s['within_5s']:>7.1%} {s['within_10s']:>7.1%} "
        f"{s['median_error_s']:>8.1f} "
        f"{s['p95_error_s']:>8.1f} {s['worst_error_s']:>8.1f}"
    )


HEAD = f"{'steps':>6} {'≤5 s':>7} {'≤10 s':>7} {'median':>8} {'p95':>8} {'worst':>8}"


def report(sim: dict, real: dict) -> str:
    lines = ["(a) simulated sessions: work steps, both ends within ±5 s; boundary errors (s)"]
    for split, r in sim.items():
        lines.append(
            f"\n{split}: {r['sessions']} sessions ({r['samples']:,} samples; simulated in "
            f"{r['simulate_s']} s, matched in {r['evaluate_s']} s); evidence {r['evidence']}"
        )
        lines.append(f"  {'':<34}{HEAD}")
        lines.append(f"  {'all work steps':<34}{_fmt(r['work'])}")
        for label, s in r["per_deviation"].items():
            lines.append(f"  {label:<34}{_fmt(s)}")
        lines.append(
            f"  skipped work steps reported matched: {r['skipped_work_steps_reported_matched']}"
            f"/{r['skipped_work_steps']}"
        )
        lines.append(
            f"  graded green while a work step was skipped or off target: "
            f"{r['green_while_skipped_or_off_target']}/{r['sessions_skipped_or_off_target']} "
            f"(skipped {r['green_while_skipped']}, off target {r['green_while_off_target']}); "
            f"with a shortened last rep: {r['green_while_short_last_rep']}/"
            f"{r['sessions_short_last_rep']}"
        )
        lines.append(f"  run sessions: status {r['statuses']}, grade {r['grades']}")
        lines.append(
            f"  easy runs paired with interval plans ({r['easy_runs']}): status "
            f"{r['easy_runs_status']}, grade {r['easy_runs_grade']}"
        )
    lines.append("\n(b) real sessions (manual / workout laps; delivered with 1 km auto-laps only)")
    lines.append(f"  {'file':<44}{'split':>9} {'grade':>6} {HEAD}")
    for s in real["sessions"]:
        name = f"{s['file'][:38]}#{s['session_index']}"
        lines.append(f"  {name:<44}{s['split']:>9} {s['grade']:>6} {_fmt(s)}")
    for split, s in real.get("splits", {}).items():
        lines.append(f"  {'all ' + split:<44}{'':>9} {'':>6} {_fmt(s)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 simulated sessions")
    parser.add_argument("--sessions", type=int, default=600, help="simulated, both splits")
    parser.add_argument("--fit-dirs", default=",".join(DEFAULT_FIT_DIRS))
    parser.add_argument("--no-real", action="store_true", help="skip the real sessions")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    n = 100 if args.quick else args.sessions
    started = time.perf_counter()
    sim = run_simulated(n // 2)
    dirs = [Path(x) for x in args.fit_dirs.split(",") if x.strip()]
    real = {"sessions": []} if args.no_real else run_real(dirs)
    print(report(sim, real))
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"simulated": sim, "real": real, "sessions": n, "fit_dirs": args.fit_dirs}
        args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
