"""Speed, peak memory and correctness of plan matching (``evaluate_plans``) at scale.

What it measures
----------------
The issue asks for the matching time of 1,000 athletes × one year of plans and activities.
Each synthetic athlete gets ``--weeks`` weeks (default 52) of a native plan with four running
sessions a week: Tuesday intervals (repeats of 200 m – 1 km, time or distance recoveries, a
pyramid, an open cooldown), Thursday tempo (continuous, cruise or progression), Saturday easy
or fartlek, Sunday long run — 17 structures in all, targets as pace, speed and heart rate.
Activities are what the athlete ran: ``--missed`` (10 %) of planned sessions are skipped;
some weeks add a 30 min morning shake-out before the Tuesday or Thursday session (two runs on
one day), a ride on Wednesday or Saturday (another sport on a plan day) and an unplanned Monday
run. Every run comes from ``tests/athlete.py`` (``simulate_session``: 1 s truth, smart
recording with 1–9 s gaps, GPS noise, timer pauses in recoveries; with ``--deviations`` the
athlete also departs from the plan as people do, ``draw_deviations``) and is recorded one of three
ways: the watch ran the workout (``wkt_step_index`` laps, auto-lapped every km inside long
steps), lap button at every step (manual laps), or plain 1 km auto-laps (the matcher must find
the steps in the samples).

Simulating a year for every athlete one second at a time would take hours, so the generator
simulates ``--variants`` runs of every structure once (a pool) and gives each activity one
pool run, shifted to its start instant (session ids, days, start times, recording modes and
missed sessions all differ; only the sample noise repeats). Samples are cleaned once
(``clean_samples``), as silver samples are. Athletes are generated independently from
``(seed, athlete)``, so the first 50 athletes are the same in every size: sizes nest.

Each size runs in its own subprocess that loads the Parquet input, resets its peak-RSS mark
(``/proc/self/clear_refs``), then times ``evaluate_plans`` (best of ``--repeat``) and,
separately, its phases: ``match_sessions``, ``match_steps`` and inside it the lap evidence and
the steps found in the samples (``detect_steps``, or the older ``_cut``; column ``detect``;
the rest of ``match_steps`` is ``interval_metrics``). Peak RSS is the child's own
``ru_maxrss`` from ``os.wait4``: the computation with its input loaded. Polars uses every
core; timings on a shared machine are noisy.

One call for 1,000 athletes × 52 weeks (≈136 M samples) needs about 50 GB: more than this
machine has (peak RSS is ≈ 5 GB per 100 athlete-years, linear). ``--batched 1000`` generates
that many athletes and matches them ``--batch-size`` (100) athletes at a time in one
subprocess, as a pipeline would have to: the times add up, the peak is one batch's.

Side by side with the code it replaced: ``--baseline`` (default ``3d6db71``, the last
commit of the ``cut`` step matcher; ``--no-baseline`` to skip) exports that commit's
``pipelines`` package (``git archive <commit> pipelines | tar -x``) to a temporary folder and
runs every size's timing child a second time, right after the current one, with that folder
first on ``PYTHONPATH`` and as its working directory (``python -m`` puts the working
directory ahead of ``PYTHONPATH``; ``benchmarks`` still comes from the repository). Both
children read the same generated Parquet (generated once, by the current code and
``tests/athlete.py``) and time ``evaluate_plans`` from whichever ``pipelines`` they import;
each child reports the folder it imported and the driver refuses a mix-up. Phases that exist
in one version only are reported where present: ``detect_steps`` (current; also split into
its own phases ``_stream``, ``_plan_shares``, ``_prepare``, ``_candidates``, ``_align``,
``_spans``, timed by wrapping them for one extra call) or ``_cut`` (baseline). The table gives
both rows per size and the ratio current / baseline.

Correctness on the generated truth: the share of structured steps (sessions of more than one
step) whose matched start and end are both within ±5 s of the true step boundaries (overall,
per evidence, and over sessions paired with the activity that ran them), how many plans were
paired with the activity that ran them, and that no activity serves two plans.

How to run (from the repository root)::

    .venv/bin/python -m benchmarks.plan_matching_speed [--athletes 25,50,100] [--weeks 52]
        [--batched 0] [--batch-size 100] [--variants 24] [--missed 0.1] [--repeat 1]
        [--seed 7] [--deviations] [--baseline 3d6db71 | --no-baseline]
        [--out benchmarks/results/plan_matching_speed.json]

The default (25, 50 and 100 athletes, not batched) takes 2–4 minutes per version on a shared
2-core machine; ``--batched 1000`` adds about 15–20 minutes per version and 3 GB of temporary
Parquet. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from benchmarks.memory import reset_peak_rss, rss_mb

RESULTS = Path(__file__).resolve().parent / "results" / "plan_matching_speed.json"
FIRST_MONDAY = date(2025, 1, 6)
TOLERANCE_S = 5.0
MODES = ("workout", "manual", "auto")  # how the watch lapped the run
MODE_P = (0.3, 0.1, 0.6)

# One native plan document holding every session structure (parsed once, then replicated).
TEMPLATES_YAML = b"""
plan: templates
sport: running
sessions:
  - {date: 2025-01-01, id: 6x400, name: 6 x 400 m, intervals: [
      {kind: warmup, duration: 10min, pace: "5:20/km"},
      {repeat: 6, intervals: [{kind: work, distance: 400m, pace: "4:00-4:10/km"},
                              {kind: recovery, duration: 90s}]},
      {kind: cooldown, duration: 8min}]}
  - {date: 2025-01-01, id: 8x400, name: 8 x 400 m, intervals: [
      {kind: warmup, duration: 8min},
      {repeat: 8, intervals: [{kind: work, distance: 400m, pace: "3:50-4:05/km"},
                              {kind: recovery, duration: 75s}]},
      {kind: cooldown, duration: 6min}]}
  - {date: 2025-01-01, id: 5x1k, name: 5 x 1 km, intervals: [
      {kind: warmup, distance: 2km},
      {repeat: 5, intervals: [{kind: work, distance: 1km, pace: "4:15-4:25/km"},
                              {kind: recovery, duration: 2min}]},
      {kind: cooldown, distance: 1.5km}]}
  - {date: 2025-01-01, id: 4x4min, name: 4 x 4 min, intervals: [
      {kind: warmup, distance: 1.5km},
      {repeat: 4, intervals: [{kind: work, duration: 4min, pace: "4:15-4:25/km"},
                              {kind: recovery, distance: 400m}]},
      {kind: cooldown, distance: 1km}]}
  - {date: 2025-01-01, id: mixed, name: 3 x (1 km + 1 min), intervals: [
      {kind: warmup, duration: 10min},
      {repeat: 3, intervals: [{kind: work, distance: 1km, speed: "4.0-4.2 m/s"},
                              {kind: recovery, duration: 2min},
                              {kind: work, duration: 1min, pace: "3:30-3:40/km"},
                              {kind: rest, duration: 60s}]},
      {kind: cooldown}]}
  - {date: 2025-01-01, id: 10x200, name: 10 x 200 m, intervals: [
      {kind: warmup, duration: 12min, hr: 125-140},
      {repeat: 10, intervals: [{kind: work, distance: 200m, pace: "3:35-3:50/km"},
                               {kind: recovery, distance: 200m}]},
      {kind: cooldown, duration: 10min}]}
  - {date: 2025-01-01, id: pyramid, name: pyramid, intervals: [
      {kind: warmup, duration: 10min},
      {kind: work, distance: 200m, pace: "3:50-4:10/km"}, {kind: recovery, duration: 90s},
      {kind: work, distance: 400m, pace: "3:50-4:10/km"}, {kind: recovery, duration: 90s},
      {kind: work, distance: 800m, pace: "3:50-4:10/km"}, {kind: recovery, duration: 90s},
      {kind: work, distance: 400m, pace: "3:50-4:10/km"}, {kind: recovery, duration: 90s},
      {kind: work, distance: 200m, pace: "3:50-4:10/km"},
      {kind: cooldown, duration: 10min}]}
  - {date: 2025-01-01, id: tempo20, name: tempo, intervals: [
      {kind: warmup, distance: 2km},
      {kind: work, duration: "20:00", speed: "3.6-3.8 m/s"},
      {kind: cooldown, distance: 1.5km, hr: 130-145}]}
  - {date: 2025-01-01, id: 2x15, name: 2 x 15 min, intervals: [
      {kind: warmup, duration: 10min},
      {repeat: 2, intervals: [{kind: work, duration: 15min, pace: "4:30-4:40/km"},
                              {kind: recovery, duration: 3min}]},
      {kind: cooldown, duration: 10min}]}
  - {date: 2025-01-01, id: progression, name: progression, intervals: [
      {kind: work, distance: 3km, pace: "5:30/km"},
      {kind: work, distance: 3km, pace: "5:00/km"},
      {kind: work, distance: 3km, pace: "4:40/km"}]}
  - {date: 2025-01-01, id: cruise, name: 3 x 2 km, intervals: [
      {kind: warmup, distance: 2km},
      {repeat: 3, intervals: [{kind: work, distance: 2km, pace: "4:20-4:30/km"},
                              {kind: recovery, duration: 90s}]},
      {kind: cooldown, distance: 1km}]}
  - {date: 2025-01-01, id: easy45, name: easy, intervals: [
      {kind: work, duration: 45min, hr: 130-145}]}
  - {date: 2025-01-01, id: easy8k, name: easy 8 km, intervals: [
      {kind: work, distance: 8km, pace: "5:20-5:50/km"}]}
  - {date: 2025-01-01, id: fartlek, name: fartlek, intervals: [
      {kind: warmup, duration: 10min},
      {repeat: 8, intervals: [{kind: work, duration: 1min, pace: "3:50-4:10/km"},
                              {kind: recovery, duration: 1min}]},
      {kind: cooldown, duration: 10min}]}
  - {date: 2025-01-01, id: long90, name: long run, intervals: [
      {kind: work, duration: 90min, pace: "5:20-5:50/km"}]}
  - {date: 2025-01-01, id: long16k, name: long run with a fast finish, intervals: [
      {kind: work, distance: 13km, pace: "5:20-5:40/km"},
      {kind: work, distance: 3km, pace: "4:40-4:50/km"}]}
  - {date: 2025-01-01, id: long75, name: long run by heart rate, intervals: [
      {kind: work, duration: 75min, hr: 135-150}]}
  - {date: 2025-01-01, id: shakeout, sport: running, intervals: [
      {kind: work, duration: 30min, pace: "5:40-6:10/km"}]}
  - {date: 2025-01-01, id: unplanned, sport: running, intervals: [
      {kind: work, duration: 40min, pace: "5:10-5:40/km"}]}
  - {date: 2025-01-01, id: ride, sport: cycling, intervals: [
      {kind: work, duration: 60min, speed: "25-30 km/h"}]}
"""

# weekday (0 = Monday) → the structures a plan draws from on that day
WEEK = {
    1: ("6x400", "8x400", "5x1k", "4x4min", "mixed", "10x200", "pyramid"),
    3: ("tempo20", "2x15", "progression", "cruise"),
    5: ("easy45", "easy8k", "fartlek"),
    6: ("long90", "long16k", "long75"),
}
EXTRAS = ("shakeout", "unplanned", "ride")  # activities no plan asks for

# --------------------------------------------------------------------------------------------
# Synthetic input
# --------------------------------------------------------------------------------------------


def _templates():
    """(planned_sessions, planned_steps) of every structure, keyed by ``template``."""
    import polars as pl

    from pipelines.plans.model import frames
    from pipelines.plans.native import parse_native_plan

    planned, steps = frames("t", parse_native_plan(TEMPLATES_YAML, "templates.yaml", "t"))
    key = pl.col("planned_session_id").str.split(":").list.last()
    return planned.with_columns(key.alias("template")), steps.with_columns(key.alias("template"))


def _workout_laps(truth, t, d):
    """Laps of a run the watch guided: one per step, split every km inside long steps, each
    carrying its step's ``wkt_step_index`` (as FIT files of structured workouts do). An
    extra rep carries the index of the step before it."""
    import polars as pl

    truth = (
        truth.filter(pl.col("true_start_s").is_not_null())
        .sort("true_start_s")
        .with_columns(pl.col("step_index").forward_fill().fill_null(0))
    )
    starts = truth["true_start_s"].to_numpy()
    ends = truth["true_end_s"].to_numpy()
    marks = np.interp(np.arange(1000.0, d[-1], 1000.0), d, t)
    cuts = np.unique(np.concatenate([starts, ends[-1:], marks]))
    lap_start, lap_end = cuts[:-1], cuts[1:]
    step = np.searchsorted(starts, lap_start, side="right") - 1
    return lap_start, lap_end, truth["step_index"].to_numpy()[step]


def _pool(variants: int, seed: int, deviations: bool = False):
    """Simulate ``variants`` runs of every structure: samples (relative time), laps for every
    recording mode, true step boundaries and per-run totals, all keyed by ``run``."""
    import polars as pl

    from pipelines.intervals import clean_samples
    from tests.athlete import draw_deviations, simulate_session

    _, steps = _templates()
    samples, laps, truths = [], [], []
    for ti, template in enumerate(steps["template"].unique(maintain_order=True)):
        template_steps = steps.filter(pl.col("template") == template)
        for v in range(variants):
            run = f"{template}/{v}"
            rng = np.random.default_rng([seed, ti, v])
            drawn = draw_deviations(template_steps, rng) if deviations else None
            s, auto, truth = simulate_session(template_steps, run, 0.0, rng, deviations=drawn)
            samples.append(s)
            t, d = s["t_s"].to_numpy(), s["distance_m"].to_numpy()
            w_start, w_end, w_step = _workout_laps(truth, t, d)
            ran = truth.filter(pl.col("true_start_s").is_not_null()).sort("true_start_s")
            m_start = ran["true_start_s"].to_numpy()
            m_end = ran["true_end_s"].to_numpy()
            for mode, start, end, trigger, wkt in (
                ("auto", auto["start_s"].to_numpy(), auto["end_s"].to_numpy(), "distance", None),
                ("workout", w_start, w_end, "manual", w_step),
                ("manual", m_start, m_end, "manual", None),
            ):
                dist = np.interp(end, t, d) - np.interp(start, t, d)
                laps.append(
                    pl.DataFrame(
                        {
                            "run": run,
                            "mode": mode,
                            "interval_index": np.arange(len(start)),
                            "start_s": start,
                            "end_s": end,
                            "lap_trigger": trigger,
                            "wkt_step_index": pl.Series(
                                wkt if wkt is not None else [None] * len(start), dtype=pl.Int64
                            ),
                            "device_distance_m": dist,
                            "distance_m": dist,
                        }
                    )
                )
            truths.append(
                truth.filter(pl.col("step_index").is_not_null())
                .select("step_index", "true_start_s", "true_end_s")
                .with_columns(pl.lit(run).alias("run"))
            )
    cleaned = (
        clean_samples(pl.concat(samples, how="diagonal_relaxed").lazy())
        .rename({"session_id": "run"})
        .collect()
    )
    totals = cleaned.group_by("run").agg(
        (pl.col("t_s").max() - pl.col("t_s").min()).alias("elapsed_s"),
        pl.col("timer_s").max().alias("timer_s"),
        pl.col("distance_m").max().alias("distance_m"),
    )
    return cleaned, pl.concat(laps), pl.concat(truths), totals


def _athlete(a: int, weeks: int, variants: int, seed: int, missed: float):
    """One athlete's year: plan rows and activity rows (plain dicts), from its own rng."""
    rng = np.random.default_rng([seed, 1_000_000 + a])
    user = f"athlete{a:05d}"
    offset_h = int(rng.choice([-5, -3, 0, 1, 2, 9]))
    plans, activities = [], []
    counter = iter(range(1_000_000))

    def activity(day: date, template: str, hour: float, plan: str | None, mode: str) -> None:
        k = next(counter)
        start = (
            (day - date(1970, 1, 1)).days * 86_400.0 + hour * 3600.0 + rng.uniform(0, 1800)
        ) - offset_h * 3600.0
        activities.append(
            {
                "session_id": hashlib.sha256(f"{user}/{k}".encode()).hexdigest()[:20],
                "user_id": user,
                "sport": "cycling" if template == "ride" else "running",
                "run": f"{template}/{int(rng.integers(variants))}",
                "mode": mode,
                "start_s": start,
                "utc_offset_s": offset_h * 3600,
                "planned_session_id": plan,
            }
        )

    for week in range(weeks):
        monday = FIRST_MONDAY + timedelta(weeks=week)
        double = int(rng.choice([1, 3])) if rng.random() < 0.2 else None
        ride = int(rng.choice([2, 5])) if rng.random() < 0.25 else None
        for weekday, choices in WEEK.items():
            day = monday + timedelta(days=weekday)
            template = str(rng.choice(choices))
            pid = f"{user}:plan:{day.isoformat()}:{template}"
            plans.append(
                {
                    "planned_session_id": pid,
                    "user_id": user,
                    "planned_date": day,
                    "template": template,
                }
            )
            if double == weekday:
                activity(day, "shakeout", 6.0, None, "auto")
            if rng.random() >= missed:
                mode = str(rng.choice(MODES, p=MODE_P))
                activity(
                    day, template, 17.0 if double == weekday else 7.0 + 10 * rng.random(), pid, mode
                )
        if ride is not None:
            activity(monday + timedelta(days=ride), "ride", 12.0, None, "auto")
        if rng.random() < 0.1:
            activity(monday, "unplanned", 18.0, None, "auto")
    return plans, activities


def _write_part(out: Path, plans, activities, pool, templates) -> dict:
    """The matcher's five inputs and the truth for these plans and activities, in ``out``."""
    import polars as pl

    from pipelines.plans.model import PLANNED_SESSION_SCHEMA

    samples, laps, truth, totals = pool
    template_sessions, template_steps = templates
    out.mkdir(parents=True)
    planned = plans.join(
        template_sessions.drop("planned_session_id", "user_id", "planned_date"),
        on="template",
    ).select(list(PLANNED_SESSION_SCHEMA))
    steps = (
        plans.select("planned_session_id", "template")
        .join(template_steps.drop("planned_session_id"), on="template")
        .drop("template")
        .sort("planned_session_id", "step_index")
    )
    utc = pl.from_epoch((pl.col("start_s") * 1000).cast(pl.Int64), time_unit="ms")
    sessions = activities.join(totals, on="run").select(
        "session_id",
        "user_id",
        "sport",
        utc.dt.replace_time_zone("UTC").alias("start_time_utc"),
        (utc + pl.duration(seconds=pl.col("utc_offset_s"))).alias("start_time_local"),
        "utc_offset_s",
        "elapsed_s",
        "timer_s",
        "distance_m",
    )
    (
        activities.lazy()
        .select("session_id", "run", "start_s")
        .join(samples.lazy(), on="run", maintain_order="left")
        .with_columns(pl.col("t_s") + pl.col("start_s"))
        .drop("run", "start_s")
        .sink_parquet(out / "samples.parquet")
    )
    (
        activities.lazy()
        .select("session_id", "run", "mode", "start_s")
        .join(laps.lazy(), on=["run", "mode"], maintain_order="left")
        .select(
            "session_id",
            pl.lit("lap").alias("kind"),
            "interval_index",
            pl.col("start_s_right") + pl.col("start_s"),
            pl.col("end_s") + pl.col("start_s"),
            "lap_trigger",
            "wkt_step_index",
            "device_distance_m",
            "distance_m",
        )
        .rename({"start_s_right": "start_s"})
        .sink_parquet(out / "laps.parquet")
    )
    activities.filter(pl.col("planned_session_id").is_not_null()).select(
        "planned_session_id", "session_id", "run", "mode", "start_s"
    ).join(truth, on="run").select(
        "planned_session_id",
        pl.col("session_id").alias("true_session_id"),
        "mode",
        "step_index",
        pl.col("true_start_s") + pl.col("start_s"),
        pl.col("true_end_s") + pl.col("start_s"),
    ).write_parquet(out / "truth.parquet")
    planned.write_parquet(out / "planned_sessions.parquet")
    steps.write_parquet(out / "planned_steps.parquet")
    sessions.write_parquet(out / "sessions.parquet")
    count = lambda name: pl.scan_parquet(out / name).select(pl.len()).collect().item()  # noqa: E731
    return {
        "planned_sessions": planned.height,
        "planned_steps": steps.height,
        "activities": sessions.height,
        "samples": count("samples.parquet"),
        "laps": count("laps.parquet"),
        "samples_parquet_mb": round((out / "samples.parquet").stat().st_size / 2**20, 1),
    }


def generate(
    sizes: list[int],
    batched: int,
    batch_size: int,
    weeks: int,
    variants: int,
    seed: int,
    missed: float,
    directory: Path,
    deviations: bool = False,
) -> dict:
    """Write one folder per size (``n<athletes>/``) with the matcher's five inputs and the
    truth, and for ``batched`` athletes one folder per batch (``batched/part<k>/``); returns
    their row counts."""
    import polars as pl

    t0 = time.perf_counter()
    pool = _pool(variants, seed, deviations)
    pool_s = time.perf_counter() - t0
    templates = _templates()
    plan_rows, activity_rows, first_activity = [], [], [0]
    for a in range(max([*sizes, batched])):
        p, act = _athlete(a, weeks, variants, seed, missed)
        plan_rows += p
        activity_rows += act
        first_activity.append(len(activity_rows))
    plans = pl.DataFrame(plan_rows).with_columns(
        pl.col("user_id").str.strip_prefix("athlete").cast(pl.Int64).alias("_athlete")
    )
    activities = pl.DataFrame(activity_rows)

    def part(out: Path, lo: int, hi: int) -> dict:
        """Athletes lo … hi − 1."""
        return {
            "athletes": hi - lo,
            "weeks": weeks,
            **_write_part(
                out,
                plans.filter(pl.col("_athlete").is_between(lo, hi - 1)).drop("_athlete"),
                activities.slice(first_activity[lo], first_activity[hi] - first_activity[lo]),
                pool,
                templates,
            ),
        }

    report: dict = {"pool_runs": pool[3].height, "pool_s": round(pool_s, 2), "sizes": {}}
    for n in sizes:
        report["sizes"][n] = part(directory / f"n{n}", 0, n)
    if batched:
        parts = [
            part(directory / "batched" / f"part{k:04d}", lo, min(lo + batch_size, batched))
            for k, lo in enumerate(range(0, batched, batch_size))
        ]
        total = {k: round(sum(p[k] for p in parts), 1) for k in parts[0] if k != "weeks"}
        report["batched"] = {**total, "weeks": weeks, "batch": batch_size, "parts": len(parts)}
    report["generate_s"] = round(time.perf_counter() - t0, 2)
    return report


# --------------------------------------------------------------------------------------------
# Worker: time the matcher on one size
# --------------------------------------------------------------------------------------------


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def check(matches, rows, truth) -> dict:
    """Correctness against the generator's truth (see the module docstring)."""
    import polars as pl

    paired = matches.filter(pl.col("session_id").is_not_null())
    done = truth.select("planned_session_id", "true_session_id").unique()
    sessions = matches.join(done, on="planned_session_id", how="left")
    structured = rows.join(
        matches.filter(pl.col("n_steps") > 1).select("planned_session_id"),
        on="planned_session_id",
    ).join(truth, on=["planned_session_id", "step_index"])
    epoch = lambda c: pl.col(c).dt.epoch("ms") / 1000  # noqa: E731
    structured = structured.with_columns(
        pl.col("session_id").eq_missing(pl.col("true_session_id")).alias("right_activity"),
        (
            ((epoch("start_time_utc") - pl.col("true_start_s")).abs() <= TOLERANCE_S)
            & ((epoch("end_time_utc") - pl.col("true_end_s")).abs() <= TOLERANCE_S)
        )
        .fill_null(False)
        .alias("within"),
    )
    right = structured.filter(pl.col("right_activity"))
    by_evidence = right.group_by("evidence").agg(
        pl.len().alias("steps"), pl.col("within").mean().alias("within_5s")
    )
    return {
        "activities_paired_twice": paired.height - paired["session_id"].n_unique(),
        "plans_run": done.height,
        "plans_paired_with_their_activity": sessions.filter(
            pl.col("session_id") == pl.col("true_session_id")
        ).height,
        "plans_run_paired_elsewhere": sessions.filter(
            pl.col("true_session_id").is_not_null()
            & ~pl.col("session_id").eq_missing(pl.col("true_session_id"))
        ).height,
        "plans_missed_but_paired": sessions.filter(
            pl.col("true_session_id").is_null() & pl.col("session_id").is_not_null()
        ).height,
        "structured_steps_run": structured.height,
        "structured_steps_within_5s": float(structured["within"].mean() or 0.0),
        "structured_steps_within_5s_right_activity": float(right["within"].mean() or 0.0),
        "by_evidence": {
            e: {"steps": n, "within_5s": round(w, 4)}
            for e, n, w in by_evidence.sort("evidence").iter_rows()
        },
        "status": dict(matches.group_by("status").len().sort("status").iter_rows()),
    }


# Functions of pipelines/plans/detect.py timed inside one detect_steps call, where they
# exist: the ones detect_steps calls, then ones nested in them (their time is inside their
# caller's too).
DETECT_PHASES = (
    "_stream",
    "_plan_shares",
    "_prepare",
    "_candidates",
    "_align",
    "_spans",
    "_change_points",
    "_align_batch",
    "_refine",
)


@contextmanager
def _phase_timers(names, into: dict[str, float]):
    """Wrap these functions of ``pipelines.plans.detect`` (those present) so that every call
    adds its wall time to ``into[name]``; restored on exit. Module globals are looked up at
    call time, so the callers inside the module see the wrappers."""
    try:
        from pipelines.plans import detect
    except ImportError:  # the baseline has no such module
        yield
        return
    saved = {n: getattr(detect, n) for n in names if hasattr(detect, n)}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                into[name] = into.get(name, 0.0) + time.perf_counter() - t0

        return timed

    for name, fn in saved.items():
        setattr(detect, name, wrap(name, fn))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(detect, name, fn)


def _measure(data: Path, repeat: int):
    """Load one folder's inputs, reset the peak-RSS mark, time ``evaluate_plans`` (best of
    ``repeat``) and then its phases; returns (timings, plan_matches, plan_interval_matches)."""
    import polars as pl

    from pipelines.plans import matching

    t0 = time.perf_counter()
    inputs = [
        pl.read_parquet(data / f"{name}.parquet")
        for name in ("planned_sessions", "planned_steps", "sessions", "samples", "laps")
    ]
    load_s = time.perf_counter() - t0
    rss_loaded = rss_mb()
    load_peak = rss_mb("VmHWM")
    reset = reset_peak_rss()
    planned, steps, sessions, samples, laps = inputs
    times = []
    for _ in range(repeat):
        (matches, rows), seconds = _timed(matching.evaluate_plans, *inputs)
        times.append(seconds)
    peak_evaluate = rss_mb("VmHWM")
    # Phases, each timed on its own (the same calls evaluate_plans and match_steps make).
    pairs, t_sessions = _timed(matching.match_sessions, planned, sessions)
    _, t_steps = _timed(matching.match_steps, pairs, steps, samples, laps)
    paired = pairs.filter(pl.col("session_id").is_not_null())
    paired_steps = steps.join(paired.select("planned_session_id"), on="planned_session_id")
    from_laps, t_laps = _timed(matching._lap_evidence, paired, paired_steps, laps)
    remaining = paired.join(
        from_laps.select("planned_session_id").unique(), on="planned_session_id", how="anti"
    )
    detect_phases: dict[str, float] = {}
    if hasattr(matching, "detect_steps"):
        config = matching.MatchConfig()
        detect_args = (remaining, paired_steps, samples, laps, config.detect)
        name = "detect_steps"
        _, t_detect = _timed(matching.detect_steps, *detect_args)
        # A separate call, so that the wrappers cannot weigh on the phase timed above.
        with _phase_timers(DETECT_PHASES, detect_phases):
            matching.detect_steps(*detect_args)
    else:
        name = "_cut"
        _, t_detect = _timed(matching._cut, remaining, paired_steps, samples)
    timings = {
        "load_s": load_s,
        "evaluate_s": min(times),
        "evaluate_s_all": times,
        "phases_s": {
            "match_sessions": t_sessions,
            "match_steps": t_steps,
            "lap_evidence": t_laps,
            name: t_detect,
            "interval_metrics_and_rest": t_steps - t_laps - t_detect,
        },
        "detect_phases_s": detect_phases,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_load_mb": load_peak,
        "peak_rss_evaluate_mb": peak_evaluate,
        "peak_reset_after_load": reset,
    }
    return timings, matches, rows


def worker(data: Path, repeat: int) -> None:
    """Child process: measure one folder, or each batch folder of ``data`` in turn (times
    summed, peaks the largest), check the outputs against the truth, print JSON."""
    import polars as pl

    import pipelines.plans.matching  # the import's cost stays out of the timings

    rss_imports = rss_mb()
    folders = [data] if (data / "planned_sessions.parquet").exists() else sorted(data.glob("part*"))
    parts, matches, rows = [], [], []
    for folder in folders:
        timings, m, r = _measure(folder, repeat)
        parts.append(timings)
        matches.append(m)
        rows.append(r)
    truth = pl.concat([pl.read_parquet(f / "truth.parquet") for f in folders])
    total = {key: sum(p[key] for p in parts) for key in ("load_s", "evaluate_s")} | {
        key: max(p[key] for p in parts)
        for key in ("rss_after_load_mb", "peak_rss_load_mb", "peak_rss_evaluate_mb")
    }
    for key in ("phases_s", "detect_phases_s"):
        total[key] = {k: sum(p[key].get(k, 0.0) for p in parts) for k in parts[0][key]}
    total["evaluate_s_all"] = [
        sum(t) for t in zip(*(p["evaluate_s_all"] for p in parts), strict=True)
    ]
    total["peak_reset_after_load"] = all(p["peak_reset_after_load"] for p in parts)
    total["batches"] = len(parts)
    total["rss_after_imports_mb"] = rss_imports
    total["pipelines"] = str(Path(pipelines.__file__).resolve().parent)
    total["correctness"] = check(pl.concat(matches), pl.concat(rows), truth)
    print(json.dumps(total))


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = "3d6db71"  # the last commit of the cut step matcher


def _child(
    args: list[str], *, cwd: Path = ROOT, pythonpath: Path | None = None
) -> tuple[str, object]:
    """Run this module in a subprocess; its last stdout line and its own rusage from wait4
    (``RUSAGE_CHILDREN`` would be the maximum over every child so far). With ``pythonpath``
    that folder is searched first, ahead of the repository."""
    cmd = [sys.executable, "-m", "benchmarks.plan_matching_speed", *args]
    env = None
    if pythonpath is not None:
        rest = os.environ.get("PYTHONPATH")
        env = os.environ | {
            "PYTHONPATH": os.pathsep.join([str(pythonpath), str(ROOT), *([rest] if rest else [])])
        }
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{args} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
    return stdout.decode().strip().splitlines()[-1], usage


def _export(commit: str, into: Path) -> str:
    """Extract ``commit``'s ``pipelines`` package into ``into``; returns the full commit id."""
    full = subprocess.run(
        ["git", "rev-parse", "--verify", f"{commit}^{{commit}}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.Popen(
        ["git", "archive", full, "pipelines"], cwd=ROOT, stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {full} pipelines failed")
    return full


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--athletes", default="25,50,100", help="comma-separated sizes")
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--variants", type=int, default=24, help="simulated runs per structure")
    parser.add_argument("--missed", type=float, default=0.1, help="share of plans not run")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per size (best)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--deviations",
        action="store_true",
        help="the simulated athlete departs from the plan as people do (tests/athlete.py)",
    )
    parser.add_argument(
        "--batched",
        type=int,
        default=0,
        help="also match this many athletes, --batch-size at a time (0: don't)",
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--baseline",
        default=DEFAULT_BASELINE,
        help="commit whose pipelines package is timed beside the current one",
    )
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_const",
        const=None,
        help="time the current code only",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = sorted({int(x) for x in args.athletes.split(",") if x.strip()})
    if args.worker:
        worker(args.worker, args.repeat)
        return 0
    if args.generate:
        report = generate(
            sizes,
            args.batched,
            args.batch_size,
            args.weeks,
            args.variants,
            args.seed,
            args.missed,
            args.generate,
            args.deviations,
        )
        print(json.dumps(report))
        return 0

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="plan_matching_speed_") as tmp:
        versions = [("current", None)]
        baseline_commit = None
        if args.baseline:
            exported = Path(tmp) / "baseline"
            baseline_commit = _export(args.baseline, exported)
            versions.append((baseline_commit[:7], exported))
            print(f"baseline: pipelines of {baseline_commit} in {exported}", flush=True)
        line, _ = _child(
            [
                "--generate",
                tmp,
                "--athletes",
                ",".join(map(str, sizes)),
                "--batched",
                str(args.batched),
                "--batch-size",
                str(args.batch_size),
                "--weeks",
                str(args.weeks),
                "--seed",
                str(args.seed),
                "--variants",
                str(args.variants),
                "--missed",
                str(args.missed),
                *(["--deviations"] if args.deviations else []),
            ]
        )
        generated = json.loads(line)
        print(
            f"input: {generated['pool_runs']} simulated runs in the pool "
            f"({generated['pool_s']} s); generated in {generated['generate_s']} s",
            flush=True,
        )
        print(HEADER, flush=True)
        runs = [(str(n), generated["sizes"][str(n)], Path(tmp) / f"n{n}") for n in sizes]
        if args.batched:
            runs.append(("batched", generated["batched"], Path(tmp) / "batched"))
        results = []
        for label, size, folder in runs:
            # Each size's versions run one right after the other, so that both see about the
            # same load from whoever else shares the machine.
            for version, exported in versions:
                run_started = time.perf_counter()
                line, usage = _child(
                    ["--worker", str(folder), "--repeat", str(args.repeat)],
                    cwd=exported or ROOT,
                    pythonpath=exported,
                )
                report = {"label": label, "version": version, **size, **json.loads(line)}
                expected = ((exported or ROOT) / "pipelines").resolve()
                if Path(report["pipelines"]) != expected:
                    raise RuntimeError(
                        f"{version} child imported {report['pipelines']}, not {expected}"
                    )
                report["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
                report["cpu_s"] = usage.ru_utime + usage.ru_stime
                report["process_wall_s"] = time.perf_counter() - run_started
                seconds = report["evaluate_s"]
                report["sessions_per_s"] = size["planned_sessions"] / seconds
                report["steps_per_s"] = size["planned_steps"] / seconds
                report["samples_per_s"] = size["samples"] / seconds
                results.append(report)
                print(_row(report), flush=True)
    comparison = _compare(results)
    print()
    print(_table(results, comparison))
    print()
    for r in results:
        c = r["correctness"]
        evidence = ", ".join(
            f"{e} {v['within_5s']:.1%} of {v['steps']:,}" for e, v in c["by_evidence"].items()
        )
        print(
            f"{_label(r):>11} {r['version']:>7}: structured steps within ±{TOLERANCE_S:.0f} s "
            f"{c['structured_steps_within_5s']:.1%} of {c['structured_steps_run']:,} "
            f"({c['structured_steps_within_5s_right_activity']:.1%} where the plan got the "
            f"activity that ran it; {evidence}); plans paired with their activity "
            f"{c['plans_paired_with_their_activity']:,}/{c['plans_run']:,}, elsewhere "
            f"{c['plans_run_paired_elsewhere']:,}, missed-but-paired "
            f"{c['plans_missed_but_paired']:,}; activities paired twice "
            f"{c['activities_paired_twice']}"
        )
    detect_rows = [r for r in results if r["detect_phases_s"]]
    if detect_rows:
        print()
        print("detect_steps by phase (seconds, one extra call; nested phases are in their caller)")
        for r in detect_rows:
            times = r["detect_phases_s"]
            phases = ", ".join(f"{k} {times[k]:.2f}" for k in DETECT_PHASES if k in times)
            print(f"{_label(r):>11} {r['version']:>7}: {phases}")
    payload = {
        "benchmark": "plan_matching_speed",
        "issue": "matching time for 1,000 athletes × one year of plans and activities",
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "polars": _version("polars"),
            "shared": "other work may run on the same cores: timings are noisy",
        },
        "parameters": {
            "athletes": sizes,
            "batched": args.batched,
            "batch_size": args.batch_size,
            "weeks": args.weeks,
            "variants": args.variants,
            "missed": args.missed,
            "repeat": args.repeat,
            "seed": args.seed,
            "deviations": args.deviations,
            "baseline": baseline_commit,
        },
        "generation": {k: v for k, v in generated.items() if k != "sizes"},
        "results": results,
        "comparison": comparison,
        "total_wall_s": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.out} ({payload['total_wall_s']:.0f} s in all)")
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _compare(results: list[dict]) -> dict[str, dict]:
    """Per size with both versions: current / baseline of the seconds and the peak RSS, and
    the share of structured steps within tolerance of each."""
    out = {}
    for label in dict.fromkeys(r["label"] for r in results):
        rows = [r for r in results if r["label"] == label]
        current = next((r for r in rows if r["version"] == "current"), None)
        base = next((r for r in rows if r["version"] != "current"), None)
        if current is None or base is None:
            continue
        out[label] = {
            "athletes": current["athletes"],
            "baseline": base["version"],
            "current_s": current["evaluate_s"],
            "baseline_s": base["evaluate_s"],
            "seconds_ratio": current["evaluate_s"] / base["evaluate_s"],
            "peak_rss_ratio": current["peak_rss_mb"] / base["peak_rss_mb"],
            "current_within_5s": current["correctness"]["structured_steps_within_5s"],
            "baseline_within_5s": base["correctness"]["structured_steps_within_5s"],
        }
    return out


HEADER = (
    f"{'athletes':>11} {'version':>7} {'plans':>8} {'steps':>9} {'acts':>8} {'samples':>11} "
    f"{'seconds':>8} {'ratio':>6} {'sess/s':>8} {'Msmp/s':>7} {'peak MB':>8}  "
    f"{'sessions':>8} {'laps':>6} {'detect':>6} {'cut':>6} {'metrics':>7} {'±5 s':>6}"
)


def _label(r: dict) -> str:
    """``1,000`` or, matched in batches, ``1,000/100``."""
    n = f"{r['athletes']:,}"
    return f"{n}/{r['batch']:,}" if r["label"] == "batched" else n


def _row(r: dict, ratio: float | None = None) -> str:
    p = r["phases_s"]
    phase = lambda name: f"{p[name]:>6.2f}" if name in p else f"{'—':>6}"  # noqa: E731
    return (
        f"{_label(r):>11} {r['version']:>7} {r['planned_sessions']:>8,} "
        f"{r['planned_steps']:>9,} {r['activities']:>8,} {r['samples']:>11,} "
        f"{r['evaluate_s']:>8.2f} {'' if ratio is None else f'{ratio:.2f}':>6} "
        f"{r['sessions_per_s']:>8,.0f} {r['samples_per_s'] / 1e6:>7.2f} "
        f"{r['peak_rss_mb']:>8,.0f}  {p['match_sessions']:>8.2f} {p['lap_evidence']:>6.2f} "
        f"{phase('detect_steps')} {phase('_cut')} {p['interval_metrics_and_rest']:>7.2f} "
        f"{r['correctness']['structured_steps_within_5s']:>6.1%}"
    )


def _table(results: list[dict], comparison: dict[str, dict]) -> str:
    """Both versions of every size; ``ratio`` (current / baseline seconds) on the current
    row."""
    rows = []
    for r in results:
        ratio = comparison.get(r["label"], {}).get("seconds_ratio")
        rows.append(_row(r, ratio if r["version"] == "current" else None))
    return "\n".join([HEADER, *rows])


if __name__ == "__main__":
    raise SystemExit(main())
