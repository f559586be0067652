"""Mutation fuzzing, short and deterministic: every input ends as a FitDecoded or FitUnusable.

Real FIT fixtures (and small valid files cut from them) are mutated by benchmarks/fuzz_fit.py
(byte flips, truncation, insertion, deletion, duplicated chunks, header size lies, lying
definitions: huge or zero field sizes, field counts, base types, message numbers) and decoded
by both decoders. No other exception may escape, no input may take more than
``fuzz_fit.TIME_LIMIT_S``, no unexpected exception may be contained by the last line of
defence (it would be a bug to fix at its cause), and the fast path must return exactly what
fitdecode returns. The long run (100,000 inputs) is ``python -m benchmarks.fuzz_fit --full``.
"""

import time
from collections import Counter

import pytest

from benchmarks import fuzz_fit

SEED = 20260612
INPUTS = 300


@pytest.fixture(scope="module")
def pool():
    seeds = fuzz_fit.seeds(shared=False)  # the repository's fixtures only: reproducible
    return seeds, [fuzz_fit._definitions(raw) for _, raw in seeds]


def test_every_mutated_input_is_decoded_or_unusable(pool):
    previous = fuzz_fit.signal.signal(fuzz_fit.signal.SIGALRM, fuzz_fit._on_alarm)
    seeds, definitions = pool
    outcomes, failures = Counter(), []
    began = time.perf_counter()
    try:
        for index in range(INPUTS):
            what, data = fuzz_fit.make_input(SEED, index, seeds, definitions)
            result = fuzz_fit.run_decoders(data)
            for decoder in ("fitdecode", "fast"):
                outcomes[result[decoder].split(":")[0]] += 1
                if fuzz_fit._bad(result[decoder]):
                    failures.append(f"#{index} {what}: {decoder} {result[decoder]}")
                if f"{decoder}_fallback" in result:
                    failures.append(f"#{index} {what}: {result[f'{decoder}_fallback']}")
    finally:
        fuzz_fit.signal.signal(fuzz_fit.signal.SIGALRM, previous)
    assert not failures, "\n".join(failures)
    assert outcomes["decoded"] > INPUTS // 4 and outcomes["unusable"] > 0  # both paths hit
    assert time.perf_counter() - began < 60  # about 7 s of CPU; generous for a shared machine


def test_mutations_are_deterministic(pool):
    seeds, definitions = pool
    assert fuzz_fit.make_input(SEED, 7, seeds, definitions) == fuzz_fit.make_input(
        SEED, 7, seeds, definitions
    )


def test_a_developer_field_named_by_a_tuple_is_kept_as_text(fixtures):
    """Found by the long fuzz run (seed 1, input #2126: tormoder/fit's mornindew-broken.fit
    with lying definitions): a damaged developer-field description names a field with a
    tuple, which JSON could not take as a key; the file decodes as damaged, like any other."""
    from pipelines.fit.decode import decode_fit

    decoded = decode_fit((fixtures / "fuzz" / "fuzzed-devfield-tuple-name.fit").read_bytes())
    assert decoded.integrity == "corrupt_data"
    assert "decoder error" not in (decoded.problem or "")
