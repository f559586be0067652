"""Mutation fuzzing, short and deterministic: every input ends as a ParsedPush (rows and
refusals, its tables built) or a PayloadError, never another exception.

Push fixtures and small generated bodies are mutated by benchmarks/fuzz_push.py (byte flips,
truncation, insertion, deletion, duplicated chunks; deep nesting, huge numbers, wrong types,
NaN/Infinity, lone surrogates, repeated keys, deleted keys, emptied lists, implausible
instants, long strings). The long run (100,000 inputs) is ``python -m benchmarks.fuzz_push``.
"""

import time

import pytest

from benchmarks import fuzz_push

SEED = 20260618
INPUTS = 2_000


@pytest.fixture(scope="module")
def pool():
    return fuzz_push.seeds()


def test_every_mutated_body_is_parsed_or_refused(pool):
    began = time.perf_counter()
    report = fuzz_push.fuzz(SEED, INPUTS, pool)
    assert not report["failures"], "\n".join(report["failures"])
    outcomes = report["outcomes"]
    # Every outcome is reached: clean parses, item refusals and whole-body refusals.
    assert min(outcomes.get(k, 0) for k in ("parsed", "parsed with refusals", "refused")) > 50
    assert time.perf_counter() - began < 20


@pytest.mark.parametrize(
    "raw",
    [
        b'{"dailies":[' + b"[" * 20_000 + b"]" * 20_000 + b"]}",
        b'{"dailies":[{"userId":"\\ud800","summaryId":"\\udfff"}],"\\ud800":[]}',
        b'{"dailies":[],"dailies":[{"userId":"u"}]}',
        b'{"activityDetails":[{"userId":"u","summary":{},"samples":[{"startTimeInSeconds":'
        + b"9" * 400
        + b"}]}]}",
        b'{"activityDetails":[{"userId":"u","summary":{},"samples":[{"startTimeInSeconds":NaN}]}]}',
        b'{"dailies":[{"userId":"u","startTimeInSeconds":1e308,"steps":-1e400}]}',
    ],
)
def test_hand_made_hostile_bodies(raw):
    assert fuzz_push.run_one(raw) in ("parsed", "parsed with refusals", "refused")


def test_mutations_are_deterministic(pool):
    assert fuzz_push.make_input(SEED, 7, pool) == fuzz_push.make_input(SEED, 7, pool)
