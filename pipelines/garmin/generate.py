"""Realistic Garmin-shaped bodies, generated (for the demo, tests and benchmarks).

Values follow physiology loosely (a resting-to-active heart-rate curve, smart-recorded runs with
1–9 s gaps and pauses, laps every kilometre); field names follow Garmin's Health and Activity
API. Deterministic for a given ``numpy.random.Generator`` seed.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

DAY_S = 86_400


def summary_id(user_id: str, start: int, suffix: str = "") -> str:
    return f"x{user_id[:7]}-{start:x}{suffix}"


def daily(user_id: str, day_start: int, rng: np.random.Generator, offset_s: int = 3600) -> dict:
    """A `dailies` item with heart-rate samples every 15 s (5,760 per day)."""
    offsets = np.arange(0, DAY_S, 15)
    hour = offsets / 3600.0
    awake = (hour > 7) & (hour < 23)
    hr = (
        np.where(awake, 72, 55) + 8 * np.sin(hour / 24 * 2 * np.pi) + rng.normal(0, 3, len(offsets))
    )
    hr = np.clip(hr, 40, 190).round().astype(int)
    steps = int(rng.integers(2_000, 18_000))
    return {
        "userId": user_id,
        "summaryId": summary_id(user_id, day_start),
        "calendarDate": _date(day_start + offset_s),
        "activityType": "WALKING",
        "startTimeInSeconds": day_start,
        "startTimeOffsetInSeconds": offset_s,
        "durationInSeconds": DAY_S,
        "steps": steps,
        "stepsGoal": 10_000,
        "distanceInMeters": round(steps * 0.78, 1),
        "activeTimeInSeconds": int(steps * 0.6),
        "activeKilocalories": int(steps * 0.04),
        "bmrKilocalories": 1700,
        "floorsClimbed": int(rng.integers(0, 20)),
        "minHeartRateInBeatsPerMinute": int(hr.min()),
        "averageHeartRateInBeatsPerMinute": int(hr.mean()),
        "maxHeartRateInBeatsPerMinute": int(hr.max()),
        "restingHeartRateInBeatsPerMinute": int(np.percentile(hr, 5)),
        "averageStressLevel": int(rng.integers(15, 45)),
        "maxStressLevel": int(rng.integers(60, 99)),
        "stressQualifier": "balanced",
        "timeOffsetHeartRateSamples": {str(o): int(v) for o, v in zip(offsets, hr, strict=True)},
    }


def sleep(user_id: str, night_start: int, rng: np.random.Generator, final: bool = True) -> dict:
    duration = int(rng.integers(6 * 3600, 9 * 3600))
    cuts = np.sort(rng.integers(0, duration, 8))
    levels: dict[str, list[dict[str, int]]] = {"deep": [], "light": [], "rem": [], "awake": []}
    edges = [0, *cuts.tolist(), duration]
    names = ["light", "deep", "light", "rem", "light", "deep", "rem", "awake", "light"]
    for name, (a, b) in zip(names, itertools.pairwise(edges), strict=False):
        if b > a:
            levels[name].append(
                {"startTimeInSeconds": night_start + a, "endTimeInSeconds": night_start + b}
            )
    totals = {
        k: sum(s["endTimeInSeconds"] - s["startTimeInSeconds"] for s in v)
        for k, v in levels.items()
    }
    return {
        "userId": user_id,
        "summaryId": summary_id(user_id, night_start),
        "calendarDate": _date(night_start + 12 * 3600),
        "startTimeInSeconds": night_start,
        "startTimeOffsetInSeconds": 3600,
        "durationInSeconds": duration,
        "deepSleepDurationInSeconds": totals["deep"],
        "lightSleepDurationInSeconds": totals["light"],
        "remSleepInSeconds": totals["rem"],
        "awakeDurationInSeconds": totals["awake"],
        "validation": "AUTO_FINAL" if final else "AUTO_TENTATIVE",
        "sleepLevelsMap": {k: v for k, v in levels.items() if v},
    }


def stress_details(user_id: str, day_start: int, rng: np.random.Generator) -> dict:
    offsets = np.arange(0, DAY_S, 180)
    stress = rng.integers(5, 80, len(offsets))
    stress[rng.random(len(offsets)) < 0.05] = -1  # off-wrist sentinel
    battery = np.clip(100 - np.cumsum(rng.integers(-1, 3, len(offsets))), 5, 100)
    return {
        "userId": user_id,
        "summaryId": summary_id(user_id, day_start, "-stress"),
        "calendarDate": _date(day_start + 3600),
        "startTimeInSeconds": day_start,
        "startTimeOffsetInSeconds": 3600,
        "durationInSeconds": DAY_S,
        "timeOffsetStressLevelValues": {
            str(o): int(v) for o, v in zip(offsets, stress, strict=True)
        },
        "timeOffsetBodyBatteryValues": {
            str(o): int(v) for o, v in zip(offsets, battery, strict=True)
        },
    }


def activity_details(
    user_id: str,
    activity_id: int,
    start: int,
    rng: np.random.Generator,
    duration_s: int = 3600,
    lap_m: float = 1000.0,
) -> dict[str, Any]:
    """A smart-recorded run: gaps of 1–9 s, pace drifting, laps every ``lap_m`` metres."""
    gaps = rng.integers(1, 10, size=duration_s)
    t = np.concatenate([[0], np.cumsum(gaps)])
    t = t[t <= duration_s]
    speed = np.clip(3.2 + np.cumsum(rng.normal(0, 0.03, len(t))), 2.0, 5.5)
    distance = np.concatenate([[0.0], np.cumsum(speed[:-1] * np.diff(t))])
    hr = np.clip(120 + 30 * (t / duration_s) + rng.normal(0, 2, len(t)), 60, 200).round()
    # Laps start when the cumulative distance passes each whole lap (between samples).
    marks = np.arange(lap_m, distance[-1], lap_m)
    lap_t = np.interp(marks, distance, t).astype(int)
    lat0, lon0 = 52.2297 + rng.normal(0, 0.1), 21.0122 + rng.normal(0, 0.1)
    samples = [
        {
            "startTimeInSeconds": start + int(ti),
            "latitudeInDegree": round(lat0 + di / 111_320.0, 7),
            "longitudeInDegree": lon0,
            "elevationInMeters": round(100 + 5 * np.sin(di / 500), 1),
            "heartRate": int(h),
            "speedMetersPerSecond": round(float(v), 3),
            "totalDistanceInMeters": round(float(di), 2),
            "timerDurationInSeconds": int(ti),
            "clockDurationInSeconds": int(ti),
            "movingDurationInSeconds": int(ti),
            "stepsPerMinute": 170,
        }
        for ti, di, v, h in zip(t, distance, speed, hr, strict=True)
    ]
    return {
        "userId": user_id,
        "summaryId": f"{activity_id}-detail",
        "activityId": activity_id,
        "summary": {
            "activityId": activity_id,
            "activityType": "RUNNING",
            "startTimeInSeconds": start,
            "startTimeOffsetInSeconds": 3600,
            "durationInSeconds": int(t[-1]),
            "distanceInMeters": round(float(distance[-1]), 2),
            "averageHeartRateInBeatsPerMinute": int(hr.mean()),
            "maxHeartRateInBeatsPerMinute": int(hr.max()),
            "averageSpeedInMetersPerSecond": round(float(distance[-1] / t[-1]), 3),
            "deviceName": "forerunner965",
        },
        "samples": samples,
        "laps": [{"startTimeInSeconds": start}]
        + [{"startTimeInSeconds": start + int(x)} for x in lap_t],
    }


def _date(epoch: int) -> str:
    return np.datetime_as_string(np.datetime64(int(epoch), "s"), unit="D").item()
