"""Mutation fuzzing of ``parse_push``: every input must end as a ParsedPush whose tables build
(rows + refusals) or as a PayloadError, never as another exception, within a time limit.

Seeds: the push-shaped bodies in ``tests/fixtures/garmin`` plus small generated bodies of
every bulky shape (dailies and stress maps, sleeps, activityDetails with samples and laps), so
both the item-by-item path (msgspec, undecoded maps and samples) and the whole-body
``json.loads`` path are reached. Mutations, one or two per input:

* bytes: flips, truncation, insertion, deletion, a duplicated chunk;
* structure (on the decoded seed, serialized again by ``dump``): deep nesting (around the
  bound and thousands of levels), huge and extreme numbers (10^15 … 10^400, 2^63, 2^64,
  1e308), wrong types, NaN/Infinity, lone surrogates (values, keys, ids, summary type keys),
  repeated keys (envelope, item, nested, samples, maps), deleted keys, emptied lists,
  implausible instants, long strings.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.fuzz_push [--inputs 100000] [--seed 18]

Prints outcome counts, failures (with the input's recipe, to replay with ``make_input``) and
the time taken. ``tests/test_garmin_push_fuzz.py`` runs a short, deterministic slice.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "garmin"
FULL_INPUTS = 100_000
TIME_LIMIT_S = 10.0  # per input
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


class Verbatim:
    """JSON text ``dump`` writes as it is (deep nesting, NaN, numbers beyond any float)."""

    def __init__(self, text: bytes) -> None:
        self.text = text


class Pairs(list):
    """An object written with its (key, value) pairs in order: keys may repeat."""


def dump(value: Any) -> bytes:
    """Compact JSON of ``value``; strings escaped by ``json.dumps`` (so lone surrogates are
    written as ``\\udXXX`` escapes), Verbatim and Pairs as described."""
    if isinstance(value, Verbatim):
        return value.text
    if isinstance(value, Pairs):
        return b"{" + b",".join(dump(k) + b":" + dump(v) for k, v in value) + b"}"
    if isinstance(value, dict):
        return b"{" + b",".join(dump(k) + b":" + dump(v) for k, v in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(dump(v) for v in value) + b"]"
    if isinstance(value, float) and not math.isfinite(value):
        return b"NaN" if math.isnan(value) else (b"Infinity" if value > 0 else b"-Infinity")
    return json.dumps(value).encode()


def seeds() -> list[tuple[str, bytes]]:
    """Push-shaped fixtures and small generated bodies, as (name, compact JSON)."""
    import numpy as np

    from pipelines.garmin.generate import activity_details, daily, sleep, stress_details

    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        out.append((path.name, path.read_bytes()))
    rng = np.random.default_rng(18)
    d = daily("user-1", T0, rng)
    d["timeOffsetHeartRateSamples"] = dict(list(d["timeOffsetHeartRateSamples"].items())[:40])
    s = stress_details("user-2", T0, rng)
    for key in ("timeOffsetStressLevelValues", "timeOffsetBodyBatteryValues"):
        s[key] = dict(list(s[key].items())[:30])
    a = activity_details("user-3", 11, T0, rng, duration_s=120, lap_m=100.0)
    generated = {
        "gen_dailies": {"dailies": [d, {**d, "summaryId": "x2", "userId": "user-9"}]},
        "gen_stress": {"stressDetails": [s]},
        "gen_sleeps": {"sleeps": [sleep("user-4", T0, rng)]},
        "gen_details": {"activityDetails": [a]},
        "gen_mixed": {"dailies": [d], "activityDetails": [a], "epochs": [{"userId": "u"}]},
    }
    for name, body in generated.items():
        out.append((name, dump(body)))
    return out


# --- mutations ------------------------------------------------------------------------------

_HUGE = [
    10**15,
    -(10**15),
    10**16,
    2**63,
    2**63 - 1,
    -(2**63) - 1,
    2**64,
    10**19,
    10**20,
    1e308,
    -1e308,
    5e-324,
    Verbatim(b"1e400"),
    Verbatim(b"-1e400"),
    Verbatim(b"9" * 400),
    Verbatim(b"9" * 5000),
    Verbatim(b"-0"),
    -0.0,
]
_ODD = [
    "",
    "x",
    "\ud800",
    "\udfff",
    "a\ud83d",
    "12:00:00",
    "9" * 30,
    True,
    False,
    None,
    [],
    {},
    [1, "a"],
    {"a": 1},
    float("nan"),
    float("inf"),
    float("-inf"),
]
_TIME_KEYS = ("startTimeInSeconds", "startTimeOffsetInSeconds", "measurementTimeInSeconds")


def _containers(value: Any, out: list) -> list:
    """Every dict and list in ``value`` (depth first; a Pairs object is left as it is)."""
    if isinstance(value, dict | list) and not isinstance(value, Pairs):
        out.append(value)
        for child in value.values() if isinstance(value, dict) else value:
            _containers(child, out)
    return out


def _set_random(rng: random.Random, body: Any, new: Any) -> str:
    """Replace a random value (in a random container) by ``new``."""
    containers = [c for c in _containers(body, []) if c]
    if not containers:
        return "nothing to replace"
    target = rng.choice(containers)
    key = rng.choice(list(target)) if isinstance(target, dict) else rng.randrange(len(target))
    target[key] = new
    return f"set {str(key)[:30]!r} = {_short(new)}"


def _short(value: Any) -> str:
    if isinstance(value, Verbatim):
        return f"verbatim {len(value.text)} bytes {value.text[:12]!r}"
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _deep(rng: random.Random, body: Any) -> str:
    levels = rng.choice([55, 59, 60, 61, 62, 63, 64, 65, 70, 200, 999, 3000, 20000])
    opener = rng.choice([b"[", b'{"a":'])
    closer = b"]" if opener == b"[" else b"}"
    return _set_random(rng, body, Verbatim(opener * levels + b"1" + closer * levels))


def _huge(rng: random.Random, body: Any) -> str:
    dicts = [c for c in _containers(body, []) if isinstance(c, dict)]
    timed = [d for d in dicts if any(k in d for k in _TIME_KEYS)]
    if timed and rng.random() < 0.5:  # an instant, the common corruption
        target = rng.choice(timed)
        key = rng.choice([k for k in _TIME_KEYS if k in target])
        target[key] = rng.choice(_HUGE)
        return f"time {key} = {_short(target[key])}"
    return _set_random(rng, body, rng.choice(_HUGE))


def _odd(rng: random.Random, body: Any) -> str:
    return _set_random(rng, body, rng.choice(_ODD))


def _nan(rng: random.Random, body: Any) -> str:
    return _set_random(rng, body, rng.choice([float("nan"), float("inf"), float("-inf")]))


def _surrogate(rng: random.Random, body: Any) -> str:
    dicts = [c for c in _containers(body, []) if isinstance(c, dict)]
    if not dicts:
        return "no object"
    target = rng.choice(dicts)
    bad = rng.choice(["\ud800", "\udc00", "ok\udfff", "\ud83d"])
    where = rng.random()
    if where < 0.4 and target is not body:
        target[rng.choice(["userId", "summaryId"])] = bad
        return "surrogate id"
    if where < 0.7:
        target[bad] = rng.choice([*_ODD[:3], 1])
        return "surrogate key"
    return _set_random(rng, body, bad)


def _repeat_key(rng: random.Random, body: Any) -> Any:
    """Make a random object repeat one of its keys (returns the body: it may be replaced)."""
    dicts = [c for c in _containers(body, []) if isinstance(c, dict) and c]
    if not dicts:
        return body, "no object"
    target = rng.choice(dicts)
    pairs = Pairs(target.items())
    key, value = rng.choice(pairs)
    again = rng.choice([value, rng.choice([*_ODD[:5], 1, 2.5]), value])
    pairs.insert(rng.randrange(len(pairs) + 1), (key, again))
    if target is body:
        return pairs, f"repeat envelope key {key[:30]!r}"
    _replace(body, target, pairs)
    return body, f"repeat key {key[:30]!r}"


def _replace(value: Any, old: Any, new: Any) -> bool:
    if isinstance(value, dict | list) and not isinstance(value, Pairs):
        keys = list(value) if isinstance(value, dict) else range(len(value))
        for k in keys:
            if value[k] is old:
                value[k] = new
                return True
            if _replace(value[k], old, new):
                return True
    return False


def _delete_key(rng: random.Random, body: Any) -> str:
    dicts = [c for c in _containers(body, []) if isinstance(c, dict) and c and c is not body]
    if not dicts:
        return "no object"
    target = rng.choice(dicts)
    key = rng.choice(list(target))
    del target[key]
    return f"delete {key[:30]!r}"


def _empty(rng: random.Random, body: Any) -> str:
    lists = [c for c in _containers(body, []) if isinstance(c, list) and c]
    if not lists:
        return "no list"
    rng.choice(lists).clear()
    return "empty a list"


def _long_string(rng: random.Random, body: Any) -> str:
    return _set_random(rng, body, "x" * rng.choice([300, 70_000, 1_100_000]))


_STRUCTURAL = {
    "deep": _deep,
    "huge": _huge,
    "odd": _odd,
    "nan": _nan,
    "surrogate": _surrogate,
    "delete": _delete_key,
    "empty": _empty,
    "long": _long_string,
}


def _bytes_mutation(rng: random.Random, data: bytearray) -> str:
    kind = rng.choice(["flip", "truncate", "insert", "delete", "duplicate"])
    if not data:
        return "empty"
    at = rng.randrange(len(data))
    if kind == "flip":
        data[at] = rng.choice([data[at] ^ (1 << rng.randrange(8)), rng.randrange(256)])
    elif kind == "truncate":
        del data[at:]
    elif kind == "insert":
        data[at:at] = rng.choice([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"\xff", b"0"])
    elif kind == "delete":
        del data[at : at + rng.randint(1, 8)]
    else:
        end = min(len(data), at + rng.randint(1, 64))
        data[at:at] = data[at:end]
    return f"{kind} at {at}"


def make_input(seed: int, index: int, pool: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """The ``index``-th input of a run: (recipe, bytes), the same for the same arguments."""
    rng = random.Random(seed * 1_000_003 + index)
    name, raw = pool[rng.randrange(len(pool))]
    steps = [name]
    roll = rng.random()
    if roll < 0.25:
        data = bytearray(raw)
        for _ in range(rng.randint(1, 3)):
            steps.append(_bytes_mutation(rng, data))
        return " | ".join(steps), bytes(data)
    try:
        body = json.loads(raw)
    except ValueError:
        return name + " (not JSON)", raw
    for _ in range(rng.randint(1, 2)):
        if rng.random() < 0.2:
            body, step = _repeat_key(rng, body)
        else:
            kind = rng.choice(list(_STRUCTURAL))
            step = f"{kind}: {_STRUCTURAL[kind](rng, body)}"
        steps.append(step)
    data = bytearray(dump(body))
    if roll > 0.9:  # structure and bytes together
        steps.append(_bytes_mutation(rng, data))
    return " | ".join(steps), bytes(data)


# --- the oracle -----------------------------------------------------------------------------


class InputTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise InputTimeout


def run_one(data: bytes) -> str:
    """The outcome of one input: "parsed", "refused" (PayloadError) or "FAIL: …"."""
    from pipelines.garmin.push import PayloadError, parse_push

    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
    try:
        parsed = parse_push(data)
        parsed.tables()
    except PayloadError:
        return "refused"
    except InputTimeout:
        return f"FAIL: more than {TIME_LIMIT_S} s"
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        return f"FAIL: {type(exc).__name__} at {where}: {str(exc)[:120]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return "parsed with refusals" if parsed.refusals else "parsed"


def fuzz(seed: int, inputs: int, pool=None, progress: bool = False) -> dict:
    pool = pool or seeds()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    outcomes: Counter = Counter()
    kinds: Counter = Counter()
    failures: list[str] = []
    began = time.perf_counter()
    try:
        for index in range(inputs):
            recipe, data = make_input(seed, index, pool)
            outcome = run_one(data)
            outcomes[outcome.split(":")[0]] += 1
            for step in recipe.split(" | ")[1:]:
                kinds[step.split(":")[0].split(" ")[0]] += 1
            if outcome.startswith("FAIL"):
                failures.append(f"#{index} [{recipe}] {outcome}")
            if progress and index and index % 10_000 == 0:
                print(f"{index:,} inputs, {time.perf_counter() - began:.0f} s", file=sys.stderr)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return {
        "inputs": inputs,
        "seeds": len(pool),
        "seconds": round(time.perf_counter() - began, 1),
        "outcomes": dict(outcomes),
        "mutations": dict(kinds.most_common()),
        "failures": failures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=FULL_INPUTS)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args(argv)
    report = fuzz(args.seed, args.inputs, progress=True)
    print(json.dumps({k: v for k, v in report.items() if k != "failures"}, indent=2))
    for failure in report["failures"][:50]:
        print(failure)
    print(f"{len(report['failures'])} failures")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
