"""Garmin Training API V2 workouts (``workouts/*.json``) and schedules (``schedules/*.json``).

PACE and SPEED targets are given as speeds in m/s (targetValueLow/High); HEART_RATE as a custom
bpm range, or a zone number in ``targetValue`` (kept as ``target_zone``: the athlete's zones are
not known here). Each scheduled date becomes one planned session.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from pipelines.plans.model import (
    KIND_ALIASES,
    PlanError,
    PlannedSession,
    Repeat,
    Step,
    unrolled_count,
)

_INTENSITY = {
    "WARMUP": "warmup",
    "INTERVAL": "work",
    "ACTIVE": "work",
    "MAIN": "work",
    "RECOVERY": "recovery",
    "REST": "rest",
    "COOLDOWN": "cooldown",
}


def _number(step: dict, key: str) -> float | None:
    value = step.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlanError(f"step {step.get('stepOrder')}: {key} must be a number, got {value!r:.30}")
    return float(value)


def _workout_step(step: Any) -> Step | Repeat:
    if not isinstance(step, dict):
        raise PlanError("a workout step must be an object")
    order = step.get("stepOrder")
    if step.get("type") == "WorkoutRepeatStep":
        times = step.get("repeatValue")
        if not isinstance(times, (int, float)) or not 1 <= times <= 100:
            raise PlanError(f"step {order}: repeatValue must be 1–100")
        children = step.get("steps")
        if not isinstance(children, list) or not children:
            raise PlanError(f"step {order}: a repeat step needs steps")
        return Repeat(int(times), [_workout_step(s) for s in children])
    intensity = str(step.get("intensity") or "ACTIVE").upper()
    kind = _INTENSITY.get(intensity) or KIND_ALIASES.get(intensity.lower(), "other")
    result = Step(kind=kind, duration_type="open", name=step.get("description"))
    duration_type = str(step.get("durationType") or "OPEN").upper()
    value = _number(step, "durationValue")
    if duration_type == "TIME" and value:
        result.duration_type, result.duration_s = "time", value
    elif duration_type == "DISTANCE" and value:
        unit = str(step.get("durationValueType") or "METER").upper()
        factor = {"METER": 1.0, "KILOMETER": 1000.0, "MILE": 1609.344}.get(unit)
        if factor is None:
            raise PlanError(f"step {order}: unknown distance unit {unit}")
        result.duration_type, result.distance_m = "distance", value * factor
    elif duration_type not in ("OPEN", "LAP_BUTTON", "TIME", "DISTANCE"):
        result.duration_type = "open"  # calories, HR thresholds…: not measurable as a span
    target = str(step.get("targetType") or "OPEN").upper()
    low, high = _number(step, "targetValueLow"), _number(step, "targetValueHigh")
    if target in ("PACE", "SPEED") and low and high:
        result.target_type = "speed"
        result.target_low, result.target_high = sorted((low, high))
    elif target == "HEART_RATE":
        result.target_type = "heart_rate"
        if low and high:
            result.target_low, result.target_high = sorted((low, high))
        elif (zone := _number(step, "targetValue")) is not None:
            result.target_zone = int(zone)
    return result


def parse_workout(raw: bytes, fallback_id: str) -> tuple[str, dict[str, Any]]:
    try:
        body = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"workout is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise PlanError("workout is nested too deeply") from exc
    if not isinstance(body, dict) or not isinstance(body.get("segments"), list):
        raise PlanError("a Training API workout is an object with 'segments'")
    workout_id = str(body.get("workoutId") or fallback_id)
    return workout_id, body


def workout_sessions(
    workout_id: str, body: dict[str, Any], dates: list[date], user_id: str
) -> list[PlannedSession]:
    steps: list[Step | Repeat] = []
    for segment in body["segments"]:
        if not isinstance(segment, dict) or not isinstance(segment.get("steps"), list):
            raise PlanError("each segment needs a 'steps' list")
        steps.extend(_workout_step(s) for s in segment["steps"])
    if not steps:
        raise PlanError(f"workout {workout_id} has no steps")
    unrolled_count(steps, f"workout {workout_id}")  # bounded before any date unrolls it
    sport = str(body.get("sport") or "running").lower()
    return [
        PlannedSession(
            planned_session_id=f"{user_id}:garmin:{workout_id}:{when.isoformat()}",
            plan_id=f"garmin-workout-{workout_id}",
            source="garmin_workout",
            planned_date=when,
            sport=sport,
            name=body.get("workoutName"),
            steps=steps,
            workout_id=workout_id,
        )
        for when in dates
    ]


def parse_schedule(raw: bytes) -> list[tuple[str, date]]:
    """``{workoutId, date}`` objects, alone or in a list."""
    try:
        body = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"schedule is not valid JSON: {exc}") from exc
    items = body if isinstance(body, list) else [body]
    out = []
    for item in items:
        if not isinstance(item, dict) or "workoutId" not in item or "date" not in item:
            raise PlanError("a schedule entry is an object with workoutId and date")
        try:
            out.append((str(item["workoutId"]), date.fromisoformat(str(item["date"]))))
        except ValueError as exc:
            raise PlanError(f"schedule date {item['date']!r} is not YYYY-MM-DD") from exc
    return out
