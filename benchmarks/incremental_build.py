"""Full build of a generated year vs the run after one more day arrives (issue #7).

What it measures
----------------
A generated year for ``--athletes`` athletes (default 1,000) over ``--days`` days (default
365), as Garmin would push it: per day one ``dailies`` body (every athlete; heart rate every
hour in ``timeOffsetHeartRateSamples``), one ``sleeps`` body (every athlete; sleep levels) and
one ``activityDetails`` body (each athlete runs every ``--activity-every`` days, 30 min,
samples every 10–30 s, laps every km), plus one native plan per athlete (a weekly interval
session all year). Then ``wearhouse run`` (the whole Dagster job, in process: ledger, bronze,
silver, warehouse, gold, asset checks) is timed three times on the same home:

1. **full**: everything lands at once (first build);
2. **noop**: nothing new;
3. **incremental**: one more day of bodies (every athlete) lands.

Reported: seconds, the incremental/full ratio (target ≤ 5 %), input sizes and row counts.
Sizes are smaller than a real year of full-rate data (samples every 10–30 s, hourly heart rate)
so the full build fits a 2-core machine in minutes; a smaller full build makes the ratio
harder, not easier, to meet.

How to run (from the repository root)::

    .venv/bin/python -m benchmarks.incremental_build [--athletes 1000] [--days 365]
        [--activity-every 7] [--home /tmp/wearhouse-incremental-bench]
        [--out benchmarks/results/incremental_build.json]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import resource
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np

from pipelines.cli import run_pipeline
from pipelines.settings import Settings

DAY_S = 86_400
START = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())


def user_ids(n: int) -> list[str]:
    return [f"athlete-{i:05d}" for i in range(n)]


def daily(user: str, day_start: int, rng: np.random.Generator) -> dict:
    hours = np.arange(0, DAY_S, 3600)
    hr = np.clip(60 + 15 * np.sin(hours / DAY_S * 2 * np.pi) + rng.normal(0, 3, 24), 40, 190)
    steps = int(rng.integers(2_000, 18_000))
    return {
        "userId": user,
        "summaryId": f"d-{user}-{day_start:x}",
        "calendarDate": datetime.fromtimestamp(day_start, UTC).date().isoformat(),
        "startTimeInSeconds": day_start,
        "startTimeOffsetInSeconds": 0,
        "durationInSeconds": DAY_S,
        "steps": steps,
        "distanceInMeters": round(steps * 0.78, 1),
        "activeKilocalories": steps // 25,
        "restingHeartRateInBeatsPerMinute": int(hr.min()),
        "averageStressLevel": int(rng.integers(15, 45)),
        "timeOffsetHeartRateSamples": {str(int(o)): int(v) for o, v in zip(hours, hr, strict=True)},
    }


def sleep(user: str, night_start: int, rng: np.random.Generator) -> dict:
    duration = int(rng.integers(6 * 3600, 9 * 3600))
    cuts = np.sort(rng.integers(0, duration, 4)).tolist()
    edges = [0, *cuts, duration]
    names = ["light", "deep", "light", "rem", "light"]
    levels: dict[str, list[dict]] = {}
    for name, a, b in zip(names, edges, edges[1:], strict=False):
        if b > a:
            levels.setdefault(name, []).append(
                {"startTimeInSeconds": night_start + a, "endTimeInSeconds": night_start + b}
            )
    return {
        "userId": user,
        "summaryId": f"s-{user}-{night_start:x}",
        "calendarDate": datetime.fromtimestamp(night_start + 43_200, UTC).date().isoformat(),
        "startTimeInSeconds": night_start,
        "startTimeOffsetInSeconds": 0,
        "durationInSeconds": duration,
        "validation": "AUTO_FINAL",
        "sleepLevelsMap": levels,
    }


def run(user: str, activity_id: int, start: int, rng: np.random.Generator) -> dict:
    t = np.concatenate([[0], np.cumsum(rng.integers(10, 31, 200))])
    t = t[t <= 1800]
    speed = np.clip(3.2 + np.cumsum(rng.normal(0, 0.05, len(t))), 2.0, 5.5)
    distance = np.concatenate([[0.0], np.cumsum(speed[:-1] * np.diff(t))])
    hr = np.clip(130 + 20 * t / 1800 + rng.normal(0, 2, len(t)), 60, 200).round()
    lap_t = np.interp(np.arange(1000.0, distance[-1], 1000.0), distance, t).astype(int)
    samples = [
        {
            "startTimeInSeconds": start + int(ti),
            "heartRate": int(h),
            "speedMetersPerSecond": round(float(v), 3),
            "totalDistanceInMeters": round(float(d), 2),
            "timerDurationInSeconds": int(ti),
        }
        for ti, d, v, h in zip(t, distance, speed, hr, strict=True)
    ]
    return {
        "userId": user,
        "summaryId": f"{activity_id}-detail",
        "activityId": activity_id,
        "summary": {
            "activityId": activity_id,
            "activityType": "RUNNING",
            "startTimeInSeconds": start,
            "startTimeOffsetInSeconds": 0,
            "durationInSeconds": int(t[-1]),
            "distanceInMeters": round(float(distance[-1]), 2),
        },
        "samples": samples,
        "laps": [{"startTimeInSeconds": start}]
        + [{"startTimeInSeconds": start + int(x)} for x in lap_t],
    }


def land_day(landing: Path, users: list[str], day: int, every: int, seed: int) -> int:
    """Write one day's bodies; return bytes written."""
    rng = np.random.default_rng([seed, day])
    day_start = START + day * DAY_S
    folder = landing / "garmin" / "push" / datetime.fromtimestamp(day_start, UTC).date().isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    bodies = {
        "dailies.json": {"dailies": [daily(u, day_start, rng) for u in users]},
        "sleeps.json": {"sleeps": [sleep(u, day_start - 3 * 3600, rng) for u in users]},
        "activityDetails.json": {
            "activityDetails": [
                run(
                    u, 10_000_000 + day * len(users) + i, day_start + 7 * 3600 + 60 * (i % 600), rng
                )
                for i, u in enumerate(users)
                if (day + i) % every == 0
            ]
        },
    }
    size = 0
    for name, body in bodies.items():
        text = json.dumps(body, separators=(",", ":"))
        (folder / name).write_text(text)
        size += len(text)
    return size


def land_plans(landing: Path, users: list[str], days: int) -> int:
    size = 0
    for i, user in enumerate(users):
        sessions = []
        for day in range(i % 7, days + 1, 7):
            date = (datetime.fromtimestamp(START, UTC) + timedelta(days=day)).date().isoformat()
            sessions.append(
                {
                    "date": date,
                    "name": "4 x 1 km",
                    "intervals": [
                        {"kind": "warmup", "duration": "5min"},
                        {
                            "repeat": 4,
                            "intervals": [
                                {"kind": "work", "distance": "1km", "pace": "4:30-5:30/km"},
                                {"kind": "recovery", "duration": "90s"},
                            ],
                        },
                        {"kind": "cooldown"},
                    ],
                }
            )
        folder = landing / "plans" / user
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"plan": "year", "sport": "running", "sessions": sessions})
        (folder / "year.json").write_text(text)
        size += len(text)
    return size


def timed_run(settings: Settings) -> float:
    start = time.perf_counter()
    assert run_pipeline(settings, out=io.StringIO()), "wearhouse run failed"
    return time.perf_counter() - start


def rows(settings: Settings) -> dict[str, int]:
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        tables = ("sessions", "intervals", "samples", "daily_summaries", "sleep_sessions")
        tables += ("wellness_timeseries", "plan_matches", "plan_interval_matches")
        return {t: con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in tables}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--athletes", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--activity-every", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--home", type=Path, default=Path("/tmp/wearhouse-incremental-bench"))
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/incremental_build.json")
    )
    args = parser.parse_args(argv)

    shutil.rmtree(args.home, ignore_errors=True)
    settings = Settings.resolve(home=args.home)
    settings.ensure_dirs()
    users = user_ids(args.athletes)
    t0 = time.perf_counter()
    year_bytes = sum(
        land_day(settings.landing, users, day, args.activity_every, args.seed)
        for day in range(args.days)
    )
    year_bytes += land_plans(settings.landing, users, args.days)
    generate_s = time.perf_counter() - t0
    print(f"generated {year_bytes / 1e6:.0f} MB in {generate_s:.0f} s", flush=True)

    full_s = timed_run(settings)
    full_rows = rows(settings)
    print(f"full build: {full_s:.1f} s {full_rows}", flush=True)
    noop_s = timed_run(settings)
    print(f"no-op run: {noop_s:.1f} s", flush=True)
    day_bytes = land_day(settings.landing, users, args.days, args.activity_every, args.seed)
    incremental_s = timed_run(settings)
    incremental_rows = rows(settings)
    print(f"incremental run (+1 day, {day_bytes / 1e6:.1f} MB): {incremental_s:.1f} s", flush=True)
    ratio = incremental_s / full_s
    print(f"incremental / full = {ratio:.2%} (target <= 5 %)")

    result = {
        "athletes": args.athletes,
        "days": args.days,
        "activity_every_days": args.activity_every,
        "year_input_mb": round(year_bytes / 1e6, 1),
        "day_input_mb": round(day_bytes / 1e6, 2),
        "full_s": round(full_s, 2),
        "noop_s": round(noop_s, 2),
        "incremental_s": round(incremental_s, 2),
        "incremental_over_full": round(ratio, 4),
        "rows_after_full": full_rows,
        "rows_after_incremental": incremental_rows,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "machine": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
