"""Planned sessions → Garmin Training API V2 workout JSON (pure).

The reverse of ``pipelines.plans.garmin_workouts``: silver holds steps with repeats unrolled
(``step_index``) but remembers which written step each one is (``definition_index``), so the
repeat blocks are found again (``reroll``) and sent as ``WorkoutRepeatStep`` with
``repeatValue``, as the watch shows them. Reading the JSON produced here back with
``garmin_workouts.workout_sessions`` gives the same unrolled steps.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PROVIDER = "wearhouse"

# planned step kind → Garmin step intensity (garmin_workouts._INTENSITY maps them back)
INTENSITY = {
    "warmup": "WARMUP",
    "work": "INTERVAL",
    "active": "ACTIVE",
    "recovery": "RECOVERY",
    "rest": "REST",
    "cooldown": "COOLDOWN",
    "other": "ACTIVE",
}
_SPORTS = (
    ("RUNNING", ("run", "jog")),
    ("CYCLING", ("bik", "cycl", "ride")),
    ("LAP_SWIMMING", ("swim",)),
)
MAX_NAME = 80  # Garmin Connect shows short names; longer ones are cut, not refused


class WorkoutError(ValueError):
    """A planned session that cannot be expressed as a Garmin workout."""


@dataclass(frozen=True)
class _Block:
    times: int
    items: list[Any]  # step rows (dicts) and nested _Blocks


def garmin_sport(sport: str | None) -> str:
    name = (sport or "running").lower()
    for garmin, words in _SPORTS:
        if any(w in name for w in words):
            return garmin
    return "GENERIC"


def reroll(steps: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Unrolled steps (in ``step_index`` order) → steps and repeat blocks.

    A written step appears only in the copies of the repeats around it, so wherever a run of
    ``definition_index`` values is followed by exact copies of itself, that run is a repeat
    block (the longest such cover wins, so nested repeats come back nested)."""
    keys = [int(s["definition_index"]) for s in steps]
    return _reroll(list(steps), keys)


def _reroll(steps: list[Any], keys: list[int]) -> list[Any]:
    out: list[Any] = []
    i, n = 0, len(keys)
    while i < n:
        best_len, best_times = 1, 1
        for j in range(i + 1, n):
            if keys[j] != keys[i]:
                continue
            length = j - i
            times = 1
            while keys[i + times * length : i + (times + 1) * length] == keys[i : i + length]:
                times += 1
            if times > 1 and times * length > best_times * best_len:
                best_len, best_times = length, times
        if best_times > 1:
            body = _reroll(steps[i : i + best_len], keys[i : i + best_len])
            out.append(_Block(best_times, body))
        else:
            out.append(steps[i])
        i += best_len * best_times
    return out


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _clean(value: float) -> int | float:
    """Whole numbers as ints (Garmin shows 800, not 800.0); others to 4 decimals."""
    rounded = round(value, 4)
    return int(rounded) if rounded == int(rounded) else rounded


def _step(row: Mapping[str, Any], order: int, sport: str) -> dict[str, Any]:
    where = f"step {row.get('step_index')}"
    step: dict[str, Any] = {
        "type": "WorkoutStep",
        "stepOrder": order,
        "intensity": INTENSITY.get(str(row.get("kind")), "ACTIVE"),
        "description": row.get("name"),
        "durationType": "OPEN",
        "durationValue": None,
        "durationValueType": None,
        "targetType": "OPEN",
        "targetValue": None,
        "targetValueLow": None,
        "targetValueHigh": None,
        "targetValueType": None,
    }
    duration_type = row.get("duration_type")
    if duration_type == "time":
        seconds = _number(row.get("planned_duration_s"))
        if not seconds or seconds <= 0:
            raise WorkoutError(f"{where}: a time step needs a positive duration")
        step.update(durationType="TIME", durationValue=_clean(seconds))
    elif duration_type == "distance":
        metres = _number(row.get("planned_distance_m"))
        if not metres or metres <= 0:
            raise WorkoutError(f"{where}: a distance step needs a positive distance")
        step.update(
            durationType="DISTANCE", durationValue=_clean(metres), durationValueType="METER"
        )
    target_type = row.get("target_type")
    low, high = _number(row.get("target_low")), _number(row.get("target_high"))
    if target_type == "speed" and low and high:
        low, high = sorted((low, high))  # m/s: the slow end of a pace range is the low speed
        step.update(
            targetType="PACE" if sport == "RUNNING" else "SPEED",
            targetValueLow=_clean(low),
            targetValueHigh=_clean(high),
        )
    elif target_type == "heart_rate" and low and high:
        low, high = sorted((low, high))
        step.update(
            targetType="HEART_RATE", targetValueLow=_clean(low), targetValueHigh=_clean(high)
        )
    elif target_type == "heart_rate" and row.get("target_zone") is not None:
        step.update(targetType="HEART_RATE", targetValue=int(row["target_zone"]))
    return step


def _steps(items: list[Any], counter: list[int], sport: str) -> list[dict[str, Any]]:
    out = []
    for item in items:
        counter[0] += 1
        if isinstance(item, _Block):
            order = counter[0]
            out.append(
                {
                    "type": "WorkoutRepeatStep",
                    "stepOrder": order,
                    "repeatType": "REPEAT_UNTIL_STEPS_CMPLT",
                    "repeatValue": item.times,
                    "skipLastRestStep": False,
                    "steps": _steps(item.items, counter, sport),
                }
            )
        else:
            out.append(_step(item, counter[0], sport))
    return out


def workout_json(session: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The Training API V2 body for one planned session (a row of ``planned_sessions``) and
    its unrolled ``planned_steps`` rows. ``workoutSourceId`` is the planned session's id."""
    if not steps:
        raise WorkoutError("a workout needs at least one step")
    ordered = sorted(steps, key=lambda s: int(s["step_index"]))
    sport = garmin_sport(session.get("sport"))
    name = session.get("name") or f"{session.get('plan_id')} {session.get('planned_date')}"
    estimated = _number(session.get("estimated_duration_s"))
    distance = _number(session.get("planned_distance_m"))
    segment_steps = _steps(reroll(ordered), [0], sport)
    return {
        "workoutName": str(name)[:MAX_NAME],
        "description": f"wearhouse planned session {session['planned_session_id']}",
        "sport": sport,
        "estimatedDurationInSecs": round(estimated) if estimated else None,
        "estimatedDistanceInMeters": _clean(distance) if distance else None,
        "poolLength": None,
        "poolLengthUnit": None,
        "workoutProvider": PROVIDER,
        "workoutSourceId": str(session["planned_session_id"]),
        "isSessionTransitionEnabled": False,
        "segments": [
            {
                "segmentOrder": 1,
                "sport": sport,
                "poolLength": None,
                "poolLengthUnit": None,
                "estimatedDurationInSecs": round(estimated) if estimated else None,
                "estimatedDistanceInMeters": _clean(distance) if distance else None,
                "steps": segment_steps,
            }
        ],
    }


def content_hash(workout: Mapping[str, Any]) -> str:
    """sha256 of the workout's canonical JSON: equal hashes mean nothing to send."""
    canonical = json.dumps(workout, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
