"""Mutation fuzzing of the FIT decoders: every byte input ends as a FitDecoded or FitUnusable.

What it does: real FIT files (tests/fixtures/fit) and small valid files cut from them (their
first k messages, sizes and CRCs rewritten, so that mutations deep inside a file stay cheap to
decode) are mutated with byte flips, truncation, insertion, deletion, duplicated chunks,
header size lies, definition lies (huge or zero field sizes, field counts, base types, message
numbers) and stacks of those; the CRCs are often recomputed afterwards so that the mutation
reaches the decoders' "ok" paths instead of stopping at a CRC mismatch. Every input goes
through both decoders (the fast path and fitdecode alone) and is classified:

* ``decoded:<integrity>`` / ``unusable``: the contract holds;
* ``internal:<signature>``: FitUnusable from the decoder's last line of defence (an
  unexpected exception converted into a reason): contained, but a bug to fix at its cause;
* ``crash:<signature>``: any other exception escaped: the contract is broken;
* ``timeout`` (per-input limit) and ``mismatch`` (fitdecode decoded it and the fast path
  returned something else).

Inputs are a pure function of (seed, index), so any finding replays with ``--replay INDEX``.
Batches run in a child process with an address-space limit (RLIMIT_AS); a child that dies
(out of memory, killed) is reported with the input it died on, and the run resumes after it.

    .venv/bin/python -m benchmarks.fuzz_fit             # quick: 2,000 inputs
    .venv/bin/python -m benchmarks.fuzz_fit --full      # 100,000 inputs per decoder
    .venv/bin/python -m benchmarks.fuzz_fit --replay 1234 --seed 0
    (--fixtures-only: seeds from tests/fixtures alone, without ../shared/data/fit)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "fit"
SHARED_CORPUS = ROOT.parent / "shared" / "data" / "fit"  # more real files, when present

QUICK_INPUTS = 2_000
FULL_INPUTS = 100_000
BATCH = 500  # inputs per child process
MEMORY_LIMIT = 3 << 30  # address space of a child, bytes
TIME_LIMIT_S = 10.0  # per input and decoder
TRIM_MESSAGES = (4, 12, 40, 120)  # small valid seeds: the first k messages of each fixture
FULL_SEED_SHARE = 0.04  # inputs mutated from a whole fixture rather than a small seed


# --------------------------------------------------------------------------- seeds


def _crc(data: bytes) -> int:
    from fitdecode.utils import compute_crc

    return compute_crc(data)


def _message_ends(raw: bytes) -> tuple[int, list[int]]:
    """Header size and the end offset of every message of the first FIT file of ``raw``."""
    import fitdecode

    ends: list[int] = []
    header_size = raw[0]
    with fitdecode.FitReader(
        raw,
        check_crc=fitdecode.CrcCheck.DISABLED,
        error_handling=fitdecode.ErrorHandling.IGNORE,
        keep_raw_chunks=True,
    ) as reader:
        try:
            for frame in reader:
                if isinstance(frame, fitdecode.FitHeader) and frame.chunk.offset > 0:
                    break
                if isinstance(frame, fitdecode.FitDataMessage | fitdecode.FitDefinitionMessage):
                    ends.append(frame.chunk.offset + len(frame.chunk.bytes))
        except Exception:  # a damaged fixture: what was read is enough
            pass
    return header_size, ends


def finish(header: bytes, body: bytes) -> bytes:
    """A FIT file from a header (its size field and CRC rewritten) and a body."""
    head = bytearray(header)
    head[4:8] = struct.pack("<I", len(body))
    if len(head) >= 14:
        head[12:14] = struct.pack("<H", _crc(bytes(head[:12])))
    chunk = bytes(head) + body
    return chunk + struct.pack("<H", _crc(chunk))


def seeds(shared: bool = True) -> list[tuple[str, bytes]]:
    """The fixtures (and the shared corpus, when present and ``shared``), and valid prefixes
    of them (first k messages, CRCs recomputed)."""
    paths = {path.name: path for path in FIXTURES.glob("*.fit")}
    if shared and SHARED_CORPUS.is_dir():
        paths = {path.name: path for path in SHARED_CORPUS.glob("*.fit")} | paths
    out = []
    for path in sorted(paths.values(), key=lambda p: p.name):
        raw = path.read_bytes()
        out.append((path.name, raw))
        header_size, ends = _message_ends(raw)
        for k in TRIM_MESSAGES:
            if k < len(ends):
                body = raw[header_size : ends[k - 1]]
                out.append((f"{path.name}[:{k}]", finish(raw[:header_size], body)))
    return out


# --------------------------------------------------------------------------- mutations


def _definitions(data: bytes) -> list[int]:
    """Offsets of definition messages (best effort, for the definition mutators)."""
    try:
        from pipelines.fit.fast_records import _scan

        return [offset for offset, _, _ in _scan(data).definitions]
    except Exception:
        return []


def _flip(rng: random.Random, data: bytearray) -> str:
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data))
        if rng.random() < 0.5:
            data[i] ^= 1 << rng.randrange(8)
        else:
            data[i] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x40, 0x20, rng.randrange(256)))
    return "flip"


def _truncate(rng: random.Random, data: bytearray) -> str:
    del data[rng.randrange(len(data)) :]
    return "truncate"


def _insert(rng: random.Random, data: bytearray) -> str:
    at = rng.randrange(len(data) + 1)
    data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return "insert"


def _delete(rng: random.Random, data: bytearray) -> str:
    at = rng.randrange(len(data))
    del data[at : at + rng.randint(1, 64)]
    return "delete"


def _duplicate(rng: random.Random, data: bytearray) -> str:
    a = rng.randrange(len(data))
    chunk = data[a : a + rng.randint(1, 512)]
    at = rng.randrange(len(data) + 1)
    data[at:at] = chunk * rng.choice((1, 1, 2, 8))
    return "duplicate"


def _header_lie(rng: random.Random, data: bytearray) -> str:
    if len(data) < 12:
        return "header_lie(short)"
    choice = rng.randrange(4)
    if choice == 0:  # data size: huge, zero, off by a little
        size = rng.choice((0xFFFFFFFF, 0x7FFFFFFF, 2 << 30, 0, 1, len(data) + rng.randint(-64, 64)))
        data[4:8] = struct.pack("<I", max(0, min(size, 0xFFFFFFFF)))
    elif choice == 1:  # header size byte
        data[0] = rng.choice((0, 1, 11, 12, 13, 14, 15, 64, 255))
    elif choice == 2:  # protocol / profile version
        data[1] = rng.randrange(256)
        data[2:4] = struct.pack("<H", rng.randrange(65536))
    else:  # a second FIT header appended or inserted: a lying chained file
        header = bytearray(data[:14])
        header[4:8] = struct.pack("<I", rng.choice((0xFFFFFFFF, 100, 0, 1 << 28)))
        at = rng.choice((len(data), rng.randrange(len(data))))
        data[at:at] = header
    if len(data) >= 14 and data[0] >= 14 and rng.random() < 0.7:
        data[12:14] = struct.pack("<H", _crc(bytes(data[:12])))  # get past the header CRC
    return f"header_lie({choice})"


def _definition_lie(rng: random.Random, data: bytearray, definitions: list[int]) -> str:
    offsets = [o for o in definitions if o + 6 <= len(data)]
    if not offsets:
        return _flip(rng, data)
    pos = rng.choice(offsets)
    n_fields = data[pos + 5]
    choice = rng.randrange(6)
    if choice == 0:  # field count
        data[pos + 5] = rng.choice((0, 1, 255, rng.randrange(256)))
    elif choice == 1:  # global message number (record becomes hrv, session, unknown, …)
        number = rng.choice((0, 18, 19, 20, 21, 23, 34, 78, 132, 206, 207, 65280, 65535))
        data[pos + 3 : pos + 5] = struct.pack("<H" if data[pos + 2] == 0 else ">H", number)
    elif choice == 2:  # architecture byte
        data[pos + 2] = rng.choice((0, 1, 2, 255))
    elif n_fields:
        at = pos + 6 + 3 * rng.randrange(n_fields)
        if at + 3 > len(data):
            return "definition_lie(short)"
        if choice == 3:  # field size: huge or zero
            data[at + 1] = rng.choice((0, 255, 254, 128, 3, 7, rng.randrange(256)))
        elif choice == 4:  # base type
            data[at + 2] = rng.choice((0x00, 0x07, 0x0D, 0x88, 0x89, 0x8E, 0x8F, 0x99, 0xFF))
        else:  # field number (timestamp, an hrv time, a component field, …)
            data[at] = rng.choice((253, 0, 1, 2, 5, 6, 8, 9, 10, 254, rng.randrange(256)))
    return f"definition_lie({choice})"


def _local_type(rng: random.Random, data: bytearray) -> str:
    """Turn header bytes into compressed-timestamp or definition headers."""
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(data))
        data[i] = rng.choice((0x80, 0xA0, 0xE0, 0x40, 0x60, 0x4F, 0x0F)) | rng.randrange(16)
    return "local_type"


_MUTATORS = (
    _flip,
    _truncate,
    _insert,
    _delete,
    _duplicate,
    _header_lie,
    _local_type,
    None,  # definition lie (needs the definition offsets)
    None,
)


def make_input(seed: int, index: int, pool: list[tuple[str, bytes]], defs: list) -> tuple:
    """The input number ``index`` of run ``seed``: (description, bytes). Deterministic."""
    rng = random.Random(f"{seed}:{index}")
    # mostly the small seeds: each input stays cheap and mutations land everywhere in a file
    full = [i for i, (name, _) in enumerate(pool) if "[" not in name]
    small = [i for i, (name, _) in enumerate(pool) if "[" in name]
    which = rng.choice(full if rng.random() < FULL_SEED_SHARE or not small else small)
    name, raw = pool[which]
    data = bytearray(raw)
    steps = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
        if not data:
            break
        mutator = rng.choice(_MUTATORS)
        if mutator is None:
            steps.append(_definition_lie(rng, data, defs[which]))
        else:
            steps.append(mutator(rng, data))
    if rng.random() < 0.5 and len(data) >= 14:  # a valid file CRC: reach the "ok" paths
        size = int.from_bytes(data[4:8], "little")
        end = data[0] + size
        if data[0] >= 12 and end + 2 <= len(data):
            data[end : end + 2] = struct.pack("<H", _crc(bytes(data[:end])))
            steps.append("crc")
    return f"{name} {'+'.join(steps)}", bytes(data)


# --------------------------------------------------------------------------- classification


class InputTimeout(BaseException):
    """One input ran past TIME_LIMIT_S (a BaseException: no decoder may swallow it)."""


def _on_alarm(signum, frame):
    raise InputTimeout


def signature(exc: BaseException) -> str:
    """Exception type, message with numbers masked, and the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" @ {Path(last.filename).name}:{last.lineno}"
    message = re.sub(r"\d+", "N", str(exc))[:120]
    return f"{type(exc).__name__}: {message}{where}"


def _same(a, b) -> bool:
    if (a.integrity, a.problem) != (b.integrity, b.problem):
        return False
    return all(a.tables[k].equals(b.tables[k]) for k in a.tables)


def run_decoders(data: bytes) -> dict[str, str]:
    """Outcome per decoder (``decode_fit`` with WEARHOUSE_FIT_DECODER set), and the
    fast-vs-fitdecode comparison. A fast path that failed unexpectedly and fell back to
    fitdecode (its RuntimeWarning) is reported as ``fallback:<text>`` next to the outcome."""
    import warnings

    from pipelines.fit import decode

    internal = getattr(decode, "INTERNAL_ERROR_PREFIX", "\0")
    outcomes, results = {}, {}
    for name in ("fitdecode", "fast"):
        os.environ[decode.DECODER_ENV] = name
        signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = decode.decode_fit(data)
            if (result.problem or "").startswith(internal):
                outcomes[name] = f"internal:{_mask(result.problem)}"
            else:
                outcomes[name] = f"decoded:{result.integrity}"
            results[name] = result
            for warning in caught:
                if "fast FIT path failed" in str(warning.message):
                    outcomes[f"{name}_fallback"] = _mask(str(warning.message))
        except InputTimeout:
            outcomes[name] = "timeout"
        except decode.FitUnusable as exc:
            text = str(exc)
            outcomes[name] = f"internal:{_mask(text)}" if text.startswith(internal) else "unusable"
        except Exception as exc:
            outcomes[name] = f"crash:{signature(exc)}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    if "fitdecode" in results and "fast" in results:
        if not _same(results["fitdecode"], results["fast"]):
            outcomes["fast"] = "mismatch"
    elif ("fitdecode" in results or "fast" in results) and "timeout" not in outcomes.values():
        outcomes["fast"] = "mismatch"
    if "fast" in results:
        outcomes["fast_decoder"] = results["fast"].decoder  # "fast", or fitdecode fell back
    return outcomes


def _mask(text: str) -> str:
    """A finding's text with numbers masked, so that one cause gives one signature."""
    return re.sub(r"[0-9]+", "N", text)[:160]


# --------------------------------------------------------------------------- worker / parent


def _worker(seed: int, start: int, stop: int, shared: bool = True) -> None:
    """Child: decode inputs [start, stop) and print one JSON line per input."""
    import resource
    import warnings

    warnings.simplefilter("ignore")
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    signal.signal(signal.SIGALRM, _on_alarm)
    pool = seeds(shared)
    defs = [_definitions(raw) for _, raw in pool]
    for index in range(start, stop):
        description, data = make_input(seed, index, pool, defs)
        began = time.perf_counter()
        outcomes = run_decoders(data)
        line = {
            "i": index,
            "what": description,
            "n": len(data),
            "s": round(time.perf_counter() - began, 4),
            **outcomes,
        }
        print(json.dumps(line), flush=True)


def _bad(outcome: str) -> bool:
    return not (outcome.startswith("decoded") or outcome == "unusable")


def run(seed: int, total: int, out: Path | None, shared: bool = True) -> dict:
    """Parent: batches in child processes; aggregate outcomes and distinct findings."""
    outcomes: dict[str, Counter] = {"fitdecode": Counter(), "fast": Counter()}
    findings: dict[str, dict] = {}  # signature -> first input, count, decoders
    fallbacks: dict[str, dict] = {}  # fast path failures that fell back to fitdecode
    fast_decoder: Counter = Counter()  # which decoder produced decode_fit's result (fast)
    slowest = (0.0, None)
    began = time.perf_counter()
    index = 0
    while index < total:
        stop = min(total, index + BATCH)
        command = [sys.executable, "-m", "benchmarks.fuzz_fit", "--worker"]
        command += ["--seed", str(seed), "--start", str(index), "--stop", str(stop)]
        command += [] if shared else ["--fixtures-only"]
        child = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        last = index - 1
        for text in child.stdout.splitlines():
            line = json.loads(text)
            last = line["i"]
            if line["s"] > slowest[0]:
                slowest = (line["s"], f"#{last} {line['what']} ({line['n']} bytes)")
            if "fast_decoder" in line:
                fast_decoder[line["fast_decoder"]] += 1
            for decoder in outcomes:
                result = line[decoder]
                outcomes[decoder][result.split(":", 1)[0] if _bad(result) else result] += 1
                if _bad(result):
                    found = findings.setdefault(
                        result,
                        {"first": last, "what": line["what"], "count": 0, "decoders": []},
                    )
                    found["count"] += 1
                    if decoder not in found["decoders"]:
                        found["decoders"].append(decoder)
                fallback = line.get(f"{decoder}_fallback")
                if fallback:  # contained (fitdecode decided), but a fast-path bug to look at
                    found = fallbacks.setdefault(
                        fallback, {"first": last, "what": line["what"], "count": 0}
                    )
                    found["count"] += 1
        if last < stop - 1:  # the child died on input last + 1
            dead = last + 1
            tail = (child.stderr.strip().splitlines() or [f"rc={child.returncode}"])[-1]
            key = f"child died: {re.sub(r'[0-9]+', 'N', tail)[:160]}"
            found = findings.setdefault(key, {"first": dead, "what": "", "count": 0})
            found["count"] += 1
            for decoder in outcomes:
                outcomes[decoder]["child died"] += 1
            index = dead + 1
        else:
            index = stop
        done = index
        rate = done / (time.perf_counter() - began)
        print(
            f"{done:>7}/{total} inputs  {rate:6.1f}/s  findings: {len(findings)}",
            file=sys.stderr,
            flush=True,
        )
    summary = {
        "seed": seed,
        "seeds": "fixtures and shared corpus" if shared else "tests/fixtures only",
        "inputs": total,
        "seconds": round(time.perf_counter() - began, 1),
        "outcomes": {k: dict(v.most_common()) for k, v in outcomes.items()},
        "fast_path_result_from": dict(fast_decoder),
        "findings": findings,
        "fast_path_fallbacks": fallbacks,
        "slowest_input": {"seconds": slowest[0], "input": slowest[1]},
    }
    if out is not None:
        out.write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help=f"{FULL_INPUTS:,} inputs")
    parser.add_argument("--inputs", type=int, help="number of inputs (overrides --full)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    parser.add_argument(
        "--fixtures-only", action="store_true", help="seeds from tests/fixtures only"
    )
    parser.add_argument("--replay", type=int, help="decode input INDEX in this process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.seed, args.start, args.stop, not args.fixtures_only)
        return 0
    if args.replay is not None:
        pool = seeds(not args.fixtures_only)
        defs = [_definitions(raw) for _, raw in pool]
        description, data = make_input(args.seed, args.replay, pool, defs)
        print(description, len(data), "bytes")
        print(run_decoders(data))
        return 0
    total = args.inputs or (FULL_INPUTS if args.full else QUICK_INPUTS)
    summary = run(args.seed, total, args.out, not args.fixtures_only)
    hidden = ("findings", "fast_path_fallbacks")
    print(json.dumps({k: v for k, v in summary.items() if k not in hidden}, indent=2))
    for title in hidden:
        print(f"{title}:")
        for key, found in sorted(summary[title].items(), key=lambda kv: -kv[1]["count"]):
            print(f"{found['count']:>6}  {key}\n        first: #{found['first']} {found['what']}")
    return 1 if summary["findings"] else 0


if __name__ == "__main__":
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    raise SystemExit(main())
