"""Planned sessions and steps: schemas, and the small grammar coaches write targets in.

Targets are stored as speed ranges in m/s (pace is its reciprocal: a *faster* pace is a *higher*
speed) or heart-rate ranges in bpm, so matching compares one kind of number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

import polars as pl


class PlanError(ValueError):
    """A plan that cannot be used, with the reason."""


# Bounds on what one plan file may ask for, checked before anything is expanded: a repeat
# block multiplies what it holds, so a few nested repeats could otherwise ask for billions of
# steps. A real session has tens of steps; a year's plan a few hundred sessions.
MAX_PLAN_FILE_BYTES = 4 << 20
MAX_STEPS_PER_SESSION = 500  # once repeats are unrolled
MAX_STEPS_PER_FILE = 50_000  # once repeats are unrolled, over all sessions of the file
MAX_SESSIONS_PER_FILE = 5_000
MAX_REPEAT_DEPTH = 4  # repeats inside repeats
MAX_DOCUMENT_DEPTH = 64  # nesting of the YAML/JSON document


PLANNED_SESSION_SCHEMA: dict[str, pl.DataType] = {
    "planned_session_id": pl.String(),
    "user_id": pl.String(),
    "plan_id": pl.String(),
    "source": pl.String(),  # native | garmin_workout
    "workout_id": pl.String(),
    "planned_date": pl.Date(),
    "sport": pl.String(),
    "name": pl.String(),
    "n_steps": pl.Int64(),
    "planned_duration_s": pl.Float64(),  # sum over the steps given as a duration
    "planned_distance_m": pl.Float64(),  # sum over the steps given as a distance
    # whole session in seconds: distance steps at their target's middle speed (else a typical
    # speed for the sport); what session matching compares activities with
    "estimated_duration_s": pl.Float64(),
}

# m/s, for distance steps without a speed target
TYPICAL_SPEED = {"running": 3.0, "cycling": 7.5, "swimming": 1.0, "walking": 1.4}
_FAMILY_WORDS = {
    "running": ("run", "jog"),
    "cycling": ("bik", "cycl", "ride"),
    "swimming": ("swim",),
    "walking": ("walk", "hik"),
}

PLANNED_STEP_SCHEMA: dict[str, pl.DataType] = {
    "planned_session_id": pl.String(),
    "step_index": pl.Int64(),  # 0-based, repeats unrolled, in execution order
    "definition_index": pl.Int64(),  # index of the step in the written plan (not unrolled)
    "repeat_iteration": pl.Int64(),  # 0-based iteration inside its repeat block (0 if none)
    "kind": pl.String(),  # warmup | work | recovery | rest | cooldown | active | other
    "name": pl.String(),
    "duration_type": pl.String(),  # time | distance | open
    "planned_duration_s": pl.Float64(),
    "planned_distance_m": pl.Float64(),
    "target_type": pl.String(),  # speed | heart_rate | open
    "target_low": pl.Float64(),  # m/s for speed (pace targets too), bpm for heart_rate
    "target_high": pl.Float64(),
    "target_zone": pl.Int64(),  # a heart-rate zone number when no range is given
}


@dataclass
class Step:
    kind: str
    duration_type: str
    duration_s: float | None = None
    distance_m: float | None = None
    target_type: str = "open"
    target_low: float | None = None
    target_high: float | None = None
    target_zone: int | None = None
    name: str | None = None


@dataclass
class Repeat:
    times: int
    steps: list[Step | Repeat] = field(default_factory=list)


@dataclass
class PlannedSession:
    planned_session_id: str
    plan_id: str
    source: str
    planned_date: date
    sport: str
    name: str | None
    steps: list[Step | Repeat]
    workout_id: str | None = None


KIND_ALIASES = {
    "warmup": "warmup",
    "warm_up": "warmup",
    "warm-up": "warmup",
    "work": "work",
    "interval": "work",
    "active": "work",
    "main": "work",
    "recovery": "recovery",
    "recover": "recovery",
    "jog": "recovery",
    "rest": "rest",
    "cooldown": "cooldown",
    "cool_down": "cooldown",
    "cool-down": "cooldown",
    "other": "other",
}

_DURATION = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(h|hr|hours?|min|mins|minutes?|m|s|sec|secs|seconds?)\s*$", re.I
)
_CLOCK = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{2})\s*$")
_DISTANCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(km|m|mi|miles?)\s*$", re.I)
_PACE = re.compile(r"(\d{1,2}):(\d{2})")


def parse_duration(value: object) -> float:
    """``90`` (s), ``"90s"``, ``"10min"``, ``"1h"``, ``"1:30:00"``, ``"4:30"`` (m:ss)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        if m := _DURATION.match(value):
            number, unit = float(m.group(1)), m.group(2).lower()
            factor = 3600 if unit.startswith("h") else 60 if unit.startswith("m") else 1
            if number > 0:
                return number * factor
        if m := _CLOCK.match(value):
            hours, minutes, seconds = int(m.group(1) or 0), int(m.group(2)), int(m.group(3))
            total = hours * 3600 + minutes * 60 + seconds
            if total > 0:
                return float(total)
    raise PlanError(f"duration {value!r} is not understood (use e.g. 90s, 10min, 1:30:00)")


def parse_distance(value: object) -> float:
    """``400`` (m), ``"400m"``, ``"1.5km"``, ``"1mi"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str) and (m := _DISTANCE.match(value)):
        number, unit = float(m.group(1)), m.group(2).lower()
        factor = 1000.0 if unit == "km" else 1609.344 if unit.startswith("mi") else 1.0
        if number > 0:
            return number * factor
    raise PlanError(f"distance {value!r} is not understood (use e.g. 400m, 1.5km)")


def parse_pace(value: str) -> tuple[float, float]:
    """``"5:20/km"`` or ``"4:00-4:10/km"`` (also ``/mi``) → speed range (low, high) in m/s."""
    text = value.strip().lower()
    unit = 1609.344 if text.endswith("/mi") else 1000.0
    if not (text.endswith("/km") or text.endswith("/mi")):
        raise PlanError(f"pace {value!r} needs a unit: /km or /mi (e.g. 4:00-4:10/km)")
    paces = [int(a) * 60 + int(b) for a, b in _PACE.findall(text)]
    if len(paces) not in (1, 2) or min(paces) <= 0:
        raise PlanError(f"pace {value!r} is not understood (use e.g. 5:20/km or 4:00-4:10/km)")
    speeds = sorted(unit / p for p in paces)
    return speeds[0], speeds[-1]


def parse_speed(value: object) -> tuple[float, float]:
    """``3.5`` (m/s), ``"3.2-3.5 m/s"``, ``"30-32 km/h"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value), float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        factor = 1 / 3.6 if text.endswith("km/h") else 1.0
        numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]
        if numbers and (text.endswith("m/s") or text.endswith("km/h")) and len(numbers) <= 2:
            speeds = sorted(n * factor for n in numbers)
            return speeds[0], speeds[-1]
    raise PlanError(f"speed {value!r} is not understood (use e.g. 3.5 m/s or 30-32 km/h)")


def parse_hr(value: object) -> tuple[float, float]:
    """``150`` or ``"150-160"`` (bpm)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value), float(value)
    if isinstance(value, str):
        numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", value)]
        if 1 <= len(numbers) <= 2 and all(30 <= n <= 240 for n in numbers):
            return min(numbers), max(numbers)
    raise PlanError(f"heart rate {value!r} is not understood (use e.g. 150-160)")


def unrolled_count(items: list[Step | Repeat], where: str, depth: int = 0) -> int:
    """How many steps ``items`` unroll to, without unrolling them; refuses repeats nested
    deeper than MAX_REPEAT_DEPTH and counts past MAX_STEPS_PER_SESSION as soon as they pass."""
    if depth > MAX_REPEAT_DEPTH:
        raise PlanError(f"{where}: repeats nested deeper than {MAX_REPEAT_DEPTH} levels")
    total = 0
    for item in items:
        if isinstance(item, Repeat):
            total += item.times * unrolled_count(item.steps, where, depth + 1)
        else:
            total += 1
        if total > MAX_STEPS_PER_SESSION:
            raise PlanError(
                f"{where}: more than {MAX_STEPS_PER_SESSION} steps once repeats are unrolled"
            )
    return total


def unroll(session: PlannedSession) -> list[dict]:
    """Steps in execution order, repeats expanded (bounded first, see ``unrolled_count``)."""
    unrolled_count(session.steps, f"session {session.planned_session_id}")
    rows: list[dict] = []
    definition_index: dict[int, int] = {}

    def walk(items: list[Step | Repeat], iteration: int) -> None:
        for item in items:
            if isinstance(item, Repeat):
                for i in range(item.times):
                    walk(item.steps, i)
            else:
                rows.append(
                    {
                        "planned_session_id": session.planned_session_id,
                        "step_index": len(rows),
                        "definition_index": definition_index.setdefault(
                            id(item), len(definition_index)
                        ),
                        "repeat_iteration": iteration,
                        "kind": item.kind,
                        "name": item.name,
                        "duration_type": item.duration_type,
                        "planned_duration_s": item.duration_s,
                        "planned_distance_m": item.distance_m,
                        "target_type": item.target_type,
                        "target_low": item.target_low,
                        "target_high": item.target_high,
                        "target_zone": item.target_zone,
                    }
                )

    walk(session.steps, 0)
    return rows


def planned_step_seconds(typical_speed_mps: float = 3.0) -> pl.Expr:
    """A planned step's size in seconds: its duration, or its distance at its speed target's
    middle (else ``typical_speed_mps``); null for an open step."""
    mid = (pl.col("target_low") + pl.col("target_high")) / 2
    speed = pl.coalesce(
        pl.when(pl.col("target_type") == "speed").then(mid), pl.lit(typical_speed_mps)
    )
    return (
        pl.when(pl.col("duration_type") == "time")
        .then(pl.col("planned_duration_s"))
        .when(pl.col("duration_type") == "distance")
        .then(pl.col("planned_distance_m") / speed)
    )


def estimated_duration(steps: list[dict], sport: str) -> float | None:
    name = sport.lower()
    family = next(
        (f for f, words in _FAMILY_WORDS.items() if any(w in name for w in words)), "running"
    )
    typical = TYPICAL_SPEED[family]
    total = 0.0
    for step in steps:
        if step["planned_duration_s"]:
            total += step["planned_duration_s"]
        elif step["planned_distance_m"]:
            speed = typical
            if step["target_type"] == "speed" and step["target_low"] and step["target_high"]:
                speed = (step["target_low"] + step["target_high"]) / 2
            total += step["planned_distance_m"] / speed
    return total or None


def frames(user_id: str, sessions: list[PlannedSession]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(planned_sessions, planned_steps) for one plan file."""
    if len(sessions) > MAX_SESSIONS_PER_FILE:
        raise PlanError(f"more than {MAX_SESSIONS_PER_FILE} sessions in one file")
    session_rows, step_rows = [], []
    for session in sessions:
        steps = unroll(session)
        if len(step_rows) + len(steps) > MAX_STEPS_PER_FILE:
            raise PlanError(f"more than {MAX_STEPS_PER_FILE} steps in one file once unrolled")
        if not steps:
            raise PlanError(f"session {session.planned_session_id}: no intervals")
        step_rows.extend(steps)
        durations = [s["planned_duration_s"] for s in steps if s["planned_duration_s"]]
        distances = [s["planned_distance_m"] for s in steps if s["planned_distance_m"]]
        session_rows.append(
            {
                "planned_session_id": session.planned_session_id,
                "user_id": user_id,
                "plan_id": session.plan_id,
                "source": session.source,
                "workout_id": session.workout_id,
                "planned_date": session.planned_date,
                "sport": session.sport,
                "name": session.name,
                "n_steps": len(steps),
                "planned_duration_s": sum(durations) if durations else None,
                "planned_distance_m": sum(distances) if distances else None,
                "estimated_duration_s": estimated_duration(steps, session.sport),
            }
        )
    return (
        pl.DataFrame(session_rows, schema=PLANNED_SESSION_SCHEMA),
        pl.DataFrame(step_rows, schema=PLANNED_STEP_SCHEMA),
    )
