"""The native plan format: YAML or JSON a coach can write by hand (see docs/plans.md).

plan: spring-10k
sport: running
sessions:
  - date: 2026-03-03
    name: 6 x 400 m
    intervals:
      - {kind: warmup, duration: 10min, pace: "5:20/km"}
      - repeat: 6
        intervals:
          - {kind: work, distance: 400m, pace: "4:00-4:10/km"}
          - {kind: recovery, duration: 90s}
      - {kind: cooldown, duration: 10min}
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import yaml

from pipelines.plans.model import (
    KIND_ALIASES,
    MAX_DOCUMENT_DEPTH,
    MAX_PLAN_FILE_BYTES,
    PlanError,
    PlannedSession,
    Repeat,
    Step,
    parse_distance,
    parse_duration,
    parse_hr,
    parse_pace,
    parse_speed,
)

MAX_REPEAT = 100


class _BoundedLoader(yaml.SafeLoader):
    """Safe YAML without aliases (an alias bomb expands a few lines into billions of nodes)
    and with a bounded nesting depth (deep nesting exhausts the composer's recursion)."""

    _depth = 0

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise PlanError(f"YAML aliases are not accepted (line {event.start_mark.line + 1})")
        self._depth += 1
        try:
            if self._depth > MAX_DOCUMENT_DEPTH:
                raise PlanError(f"nested deeper than {MAX_DOCUMENT_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_document(raw: bytes, name: str) -> Any:
    if len(raw) > MAX_PLAN_FILE_BYTES:
        raise PlanError(f"{len(raw):,} bytes: plan files are at most {MAX_PLAN_FILE_BYTES:,}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlanError(f"not UTF-8 text: {exc.reason}") from exc
    try:
        if name.lower().endswith(".json"):
            return json.loads(text)
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader subclass
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PlanError(f"not valid {'JSON' if name.endswith('.json') else 'YAML'}: {exc}") from exc
    except RecursionError as exc:
        raise PlanError("nested too deeply to be a plan") from exc
    except ValueError as exc:  # YAML's own date parsing, e.g. 2026-13-40
        if isinstance(exc, PlanError):
            raise
        raise PlanError(f"invalid value: {exc} (dates are YYYY-MM-DD)") from exc


def _step(spec: Any, where: str) -> Step | Repeat:
    if not isinstance(spec, dict):
        raise PlanError(f"{where}: an interval must be a mapping, got {spec!r:.40}")
    if "repeat" in spec:
        times = spec["repeat"]
        if not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= MAX_REPEAT:
            raise PlanError(f"{where}: repeat must be a whole number 1–{MAX_REPEAT}")
        inner = spec.get("intervals")
        if not isinstance(inner, list) or not inner:
            raise PlanError(f"{where}: a repeat needs a non-empty 'intervals' list")
        return Repeat(times, [_step(s, f"{where}.intervals[{i}]") for i, s in enumerate(inner)])
    kind = KIND_ALIASES.get(str(spec.get("kind", "work")).lower())
    if kind is None:
        raise PlanError(f"{where}: unknown kind {spec.get('kind')!r}")
    try:
        step = Step(kind=kind, duration_type="open", name=spec.get("name"))
        if "duration" in spec and "distance" in spec:
            raise PlanError("give either duration or distance, not both")
        if "duration" in spec:
            step.duration_type, step.duration_s = "time", parse_duration(spec["duration"])
        elif "distance" in spec:
            step.duration_type, step.distance_m = "distance", parse_distance(spec["distance"])
        targets = [k for k in ("pace", "speed", "hr") if k in spec]
        if len(targets) > 1:
            raise PlanError(f"one target per interval, got {targets}")
        if "pace" in spec:
            step.target_type = "speed"
            step.target_low, step.target_high = parse_pace(str(spec["pace"]))
        elif "speed" in spec:
            step.target_type = "speed"
            step.target_low, step.target_high = parse_speed(spec["speed"])
        elif "hr" in spec:
            step.target_type = "heart_rate"
            step.target_low, step.target_high = parse_hr(spec["hr"])
    except PlanError as exc:
        raise PlanError(f"{where}: {exc}") from exc
    return step


def _date(value: Any, where: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise PlanError(f"{where}: date {value!r} is not YYYY-MM-DD") from exc


def parse_native_plan(raw: bytes, name: str, user_id: str) -> list[PlannedSession]:
    doc = load_document(raw, name)
    if not isinstance(doc, dict) or not isinstance(doc.get("sessions"), list):
        raise PlanError("a plan is a mapping with a 'sessions' list")
    plan_id = str(doc.get("plan") or name.rsplit(".", 1)[0])
    default_sport = str(doc.get("sport", "running")).lower()
    sessions = []
    for index, spec in enumerate(doc["sessions"]):
        where = f"sessions[{index}]"
        if not isinstance(spec, dict):
            raise PlanError(f"{where}: a session must be a mapping")
        when = _date(spec.get("date"), where)
        intervals = spec.get("intervals")
        if not isinstance(intervals, list) or not intervals:
            raise PlanError(f"{where}: needs a non-empty 'intervals' list")
        session_key = spec.get("id") or index
        sessions.append(
            PlannedSession(
                planned_session_id=f"{user_id}:{plan_id}:{when.isoformat()}:{session_key}",
                plan_id=plan_id,
                source="native",
                planned_date=when,
                sport=str(spec.get("sport", default_sport)).lower(),
                name=spec.get("name"),
                steps=[_step(s, f"{where}.intervals[{i}]") for i, s in enumerate(intervals)],
            )
        )
    return sessions
