"""Property tests: whatever shape a plan or a push body takes, it ends as rows or as a reason.

Hypothesis draws plan documents (nested repeats, every key a coach writes, wrong types,
garbage) and push envelopes (known and unknown summary types, items of any JSON shape, ids and
times of any kind). The parsers must return or raise their own error, quickly, never anything
else: the ingest stages then quarantine that input alone.
"""

from __future__ import annotations

import json

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.garmin.push import PayloadError, parse_push
from pipelines.plans.model import PlanError, frames
from pipelines.plans.native import parse_native_plan

PROPERTY = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)

durations = st.one_of(
    st.sampled_from(["90s", "10min", "1h", "4:30", "1:30:00", "soon", "", "-5min", "0s"]),
    st.integers(min_value=-10, max_value=10**7),
    st.floats(allow_nan=False, allow_infinity=False),
    json_values,
)
distances = st.one_of(
    st.sampled_from(["400m", "1.5km", "1mi", "0m", "far", "400"]),
    st.integers(min_value=-10, max_value=10**7),
    json_values,
)
paces = st.one_of(
    st.sampled_from(["5:20/km", "4:00-4:10/km", "8:00/mi", "99:99/km", "fast"]), json_values
)


@st.composite
def steps(draw, depth: int = 0):
    if depth < 4 and draw(st.booleans()):
        return {
            "repeat": draw(st.one_of(st.integers(min_value=-2, max_value=120), json_values)),
            "intervals": draw(st.lists(steps(depth + 1), min_size=0, max_size=3)),
        }
    step = {
        "kind": draw(
            st.one_of(
                st.sampled_from(["warmup", "work", "recovery", "rest", "cooldown", "interval"]),
                json_values,
            )
        )
    }
    for key, values in (("duration", durations), ("distance", distances), ("pace", paces)):
        if draw(st.booleans()):
            step[key] = draw(values)
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        step[draw(st.sampled_from(["speed", "hr", "name", "junk"]))] = draw(json_values)
    return step


plans = st.fixed_dictionaries(
    {
        "sessions": st.lists(
            st.fixed_dictionaries(
                {
                    "date": st.one_of(
                        st.sampled_from(["2026-03-03", "2026-13-40", "tomorrow"]), json_values
                    ),
                    "intervals": st.lists(steps(), max_size=4),
                }
            ),
            max_size=3,
        )
    },
    optional={"plan": json_values, "sport": json_values},
)


@PROPERTY
@given(plans)
def test_any_plan_shape_ends_as_rows_or_a_plan_error(document):
    raw = json.dumps(document).encode()
    try:
        sessions, step_rows = frames("u", parse_native_plan(raw, "plan.json", "u"))
    except PlanError:
        return
    assert isinstance(sessions, pl.DataFrame) and isinstance(step_rows, pl.DataFrame)
    assert step_rows.height <= 500 * max(1, sessions.height)


SUMMARY_TYPES = ["activities", "activityDetails", "dailies", "epochs", "sleeps", "stressDetails"]
times = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=600_000_000, max_value=4_000_000_000),
    st.floats(allow_nan=False, allow_infinity=False),
    json_values,
)
items = st.fixed_dictionaries(
    {},
    optional={
        "userId": st.one_of(st.text(max_size=12), json_values),
        "summaryId": st.one_of(st.text(max_size=12), json_values),
        "startTimeInSeconds": times,
        "durationInSeconds": times,
        "startTimeOffsetInSeconds": times,
        "samples": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "startTimeInSeconds": times,
                    "totalDistanceInMeters": json_values,
                    "heartRate": json_values,
                },
            ),
            max_size=4,
        ),
        "timeOffsetHeartRateSamples": st.dictionaries(st.text(max_size=6), json_values, max_size=3),
        "extra": json_values,
    },
)
envelopes = st.dictionaries(
    st.one_of(st.sampled_from(SUMMARY_TYPES), st.text(max_size=10)),
    st.one_of(st.lists(st.one_of(items, json_values), max_size=4), json_values),
    max_size=3,
)


@PROPERTY
@given(envelopes)
def test_any_push_shape_ends_as_rows_refusals_or_a_payload_error(body):
    raw = json.dumps(body).encode()
    try:
        parsed = parse_push(raw)
    except PayloadError:
        return
    tables = parsed.tables()
    assert all(isinstance(frame, pl.DataFrame) for frame in tables.values())
    assert all(isinstance(index, int) and reason for index, reason in parsed.refusals)
