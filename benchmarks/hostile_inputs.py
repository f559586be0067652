"""One ``wearhouse run`` over a landing full of hostile inputs: exit code, time, peak memory,
and what became of every input.

What it measures
----------------
A fresh home under /tmp gets a landing generated here (deterministic, nothing read from the
network): a few good inputs (two FIT fixtures, one push body fixture, a valid plan) and every
hostile kind the project has to survive:

* Garmin push bodies: nesting thousands of levels deep (inside an item, and the whole body),
  an instant of 10^15 s, a ``userId`` that is a lone surrogate, a repeated ``dailies`` key, an
  ``activityDetails`` sample dated 10^16, a ``stressDetails`` item with time series but no
  ``summaryId``, 250,000 tiny items, ``NaN``/``Infinity`` literals, truncated JSON, and (not
  with ``--quick``) a 200 MB body of dailies (``garmin_ingest_memory.generate``);
* FIT files: a header claiming 2 GB on a 1 KB file, a ``.fit.gz`` bomb (zeros streamed through
  gzip, about 20 MB expanding to 5 GiB; not with ``--quick``), seeded mutations of a fixture
  (the mutators of ``fuzz_fit``), an empty file, a text file named ``.fit``;
* plans: nested repeats multiplying to 10^10 steps (and to 10^8 within the depth bound), a YAML
  alias bomb, a session of 10,001 steps, a list nested 5,000 deep;
* landing tricks: a link to /etc/passwd named as a push body, a user folder that is a link to a
  folder outside landing holding a FIT file, a FIFO named as a push body, a file in a folder no
  ingest handles.

``wearhouse run --home TMP`` runs as a child process with a hard timeout and an address-space
limit (``RLIMIT_AS``, inherited by the FIT decoding workers) that proves the memory bound.
Peak RSS is read two ways: ``ru_maxrss`` from ``os.wait4`` (the largest single process of the
run's tree: the run itself or one decoding worker) and the sum of RSS over the whole process
tree, sampled from /proc every 0.2 s. The outcome of every input is read from the warehouse
(``quarantine``: stage, item, reason), the ledger (kind) and the bronze parts (rows per
``source_path``). The run is then repeated over the same home: it must be fast and change
nothing (same lake files, same warehouse row counts). Two more runs, each in a home of its
own, give the reference points: the good inputs alone, and the good inputs plus the 200 MB
body alone (the memory bound relative to the largest body).

How to run (from the repository root; about 6 minutes, ``--quick`` under a minute)::

    .venv/bin/python -m benchmarks.hostile_inputs [--quick] [--timeout-min 20] [--as-gib 8]
        [--body-mb 200] [--keep DIR]

Prints the numbers and the outcome table as Markdown (``benchmarks/RESULTS-hostile.md``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIT_FIXTURES = ROOT / "tests" / "fixtures" / "fit"
GARMIN_FIXTURES = ROOT / "tests" / "fixtures" / "garmin"
WEARHOUSE = ROOT / ".venv" / "bin" / "wearhouse"
MB = 2**20
GIB = 2**30
EPOCH0 = 1_767_225_600  # 2026-01-01T00:00:00Z
SEED = 18

GOOD_FIT = ("activity_234979239.fit", "2013-02-06-12-11-14.fit")
GOOD_PUSH = "synthetic_push_activityDetails_cycling_power.json"
MUTATED_FIT = "activity_234979239.fit"
OUTSIDE_FIT = "activity_424479793.fit"  # what the linked user folder offers
MUTANTS = 36
TINY_ITEMS = 250_000
DEEP = 5_000
BOMB_GIB = 5
SAMPLE_EVERY_S = 0.2

GOOD_PLAN = """\
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
      - {kind: cooldown, duration: 8min}
  - date: 2026-03-05
    name: tempo
    intervals:
      - {kind: warmup, distance: 2km}
      - {kind: work, duration: "20:00", speed: "3.6-3.8 m/s"}
      - {kind: cooldown, distance: 1.5km, hr: 130-145}
"""


@dataclass
class Input:
    path: str  # relative to landing
    what: str
    good: bool = False


@dataclass
class Landing:
    inputs: list[Input] = field(default_factory=list)

    def add(self, landing: Path, path: str, data: bytes, what: str, good: bool = False) -> Path:
        target = landing / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.inputs.append(Input(path, what, good))
        return target


# --------------------------------------------------------------------------- the landing


def _compact(value) -> bytes:
    """Compact JSON as Garmin sends it; lone surrogates become ``\\udXXX`` escapes and
    non-finite floats the ``NaN``/``Infinity`` literals ``json`` writes."""
    return json.dumps(value, separators=(",", ":")).encode()


def add_good(landing: Path, book: Landing) -> None:
    for name in GOOD_FIT:
        book.add(landing, f"fit/good-user/{name}", (FIT_FIXTURES / name).read_bytes(), "FIT", True)
    book.add(
        landing,
        f"garmin/push/{GOOD_PUSH}",
        (GARMIN_FIXTURES / GOOD_PUSH).read_bytes(),
        "push body",
        True,
    )
    book.add(landing, "plans/good-user/spring.yaml", GOOD_PLAN.encode(), "plan", True)


def add_hostile_push(landing: Path, book: Landing) -> None:
    import numpy as np

    from pipelines.garmin.generate import activity_details, daily, stress_details

    rng = np.random.default_rng(SEED)
    day = iter(range(EPOCH0, EPOCH0 + 400 * 86_400, 86_400))

    def good_daily() -> bytes:
        return _compact(daily("push-user", next(day), rng))

    def put(name: str, data: bytes, what: str) -> None:
        book.add(landing, f"garmin/push/{name}", data, what)

    deep_value = b"[" * DEEP + b"]" * DEEP
    item = _compact(daily("push-user", next(day), rng))
    put(
        "deep-item.json",
        b'{"dailies":[' + good_daily() + b"," + item[:-1] + b',"deep":' + deep_value + b"}]}",
        f"a daily holding a list nested {DEEP:,} deep, beside a good daily",
    )
    put(
        "deep-body.json",
        b'{"dailies":' + deep_value + b"}",
        f"the envelope's value nested {DEEP:,} deep",
    )
    huge = daily("push-user", next(day), rng)
    huge["startTimeInSeconds"] = 10**15
    put(
        "start-1e15.json",
        b'{"dailies":[' + good_daily() + b"," + _compact(huge) + b"]}",
        "a daily with startTimeInSeconds 10^15, beside a good daily",
    )
    surrogate = daily("push-user", next(day), rng)
    surrogate["userId"] = "\ud800"
    put(
        "userid-surrogate.json",
        b'{"dailies":[' + good_daily() + b"," + _compact(surrogate) + b"]}",
        'a daily whose userId is "\\ud800", beside a good daily',
    )
    put(
        "duplicate-key.json",
        b'{"dailies":[' + good_daily() + b'],"dailies":[' + good_daily() + b"]}",
        'the "dailies" key twice, a good daily under each',
    )
    run = activity_details("push-user", 10**10 + 1, next(day), rng, duration_s=600)
    run["samples"][5]["startTimeInSeconds"] = 10**16
    put(
        "sample-1e16.json",
        b'{"activityDetails":[' + _compact(run) + b"]}",
        "an activityDetails run with one sample dated 10^16",
    )
    stress = stress_details("push-user", next(day), rng)
    del stress["summaryId"]
    put(
        "stress-no-summaryid.json",
        b'{"stressDetails":['
        + _compact(stress)
        + b","
        + _compact(stress_details("push-user", next(day), rng))
        + b"]}",
        "a stressDetails item with time series and no summaryId, beside a good one",
    )
    tiny = b",".join(
        b'{"userId":"tiny-user","summaryId":"t%d","startTimeInSeconds":%d,"steps":%d}'
        % (k, EPOCH0 + 900 * k, k % 97)
        for k in range(TINY_ITEMS)
    )
    put("many-items.json", b'{"epochs":[' + tiny + b"]}", f"{TINY_ITEMS:,} tiny epochs items")
    nan = daily("push-user", next(day), rng)
    nan["steps"], nan["distanceInMeters"] = float("nan"), float("inf")
    nan["averageStressLevel"] = float("-inf")
    nan["timeOffsetHeartRateSamples"]["15"] = float("nan")
    put(
        "nan-infinity.json",
        b'{"dailies":[' + good_daily() + b"," + _compact(nan) + b"]}",
        "a daily with NaN, Infinity, -Infinity literals (one in its HR map), beside a good daily",
    )
    body = (GARMIN_FIXTURES / "synthetic_specshaped_dailies.json").read_bytes()
    put("truncated.json", body[: len(body) // 2], "a dailies body cut in half")


def fit_mutants(raw: bytes, count: int) -> list[tuple[str, bytes]]:
    """``count`` mutations of ``raw`` with ``fuzz_fit``'s mutators, one to three each."""
    from benchmarks import fuzz_fit

    definitions = fuzz_fit._definitions(raw)
    out = []
    for index in range(count):
        rng = random.Random(f"{SEED}:{index}")
        data, steps = bytearray(raw), []
        for _ in range(rng.choice((1, 1, 2, 3))):
            if not data:
                break
            mutator = rng.choice(fuzz_fit._MUTATORS)
            if mutator is None:
                steps.append(fuzz_fit._definition_lie(rng, data, definitions))
            else:
                steps.append(mutator(rng, data))
        out.append(("+".join(steps), bytes(data)))
    return out


def write_gzip_bomb(path: Path, header: bytes, gib: int) -> None:
    """A FIT header followed by ``gib`` GiB of zeros, gzipped a chunk at a time: the fastest
    level still expands far beyond any plausible FIT file and builds in seconds."""
    zeros = bytes(16 * MB)
    with gzip.GzipFile(path, "wb", compresslevel=1, mtime=0) as handle:
        handle.write(header)
        for _ in range(gib * GIB // len(zeros)):
            handle.write(zeros)


def add_hostile_fit(landing: Path, book: Landing, bomb: bool) -> None:
    from benchmarks.fuzz_fit import _crc

    raw = (FIT_FIXTURES / MUTATED_FIT).read_bytes()
    header = bytearray(raw[:14])
    header[4:8] = struct.pack("<I", 2 * 10**9)
    header[12:14] = struct.pack("<H", _crc(bytes(header[:12])))
    book.add(
        landing,
        "fit/hostile-user/claims-2gb.fit",
        bytes(header) + raw[14:1024],
        "header claims 2 GB of data; the file is 1 KB (a real file's first messages)",
    )
    if bomb:
        path = landing / "fit/hostile-user/bomb.fit.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_gzip_bomb(path, bytes(header), BOMB_GIB)
        book.inputs.append(
            Input(
                "fit/hostile-user/bomb.fit.gz",
                f"gzip bomb: {path.stat().st_size / MB:.1f} MB expanding to {BOMB_GIB} GiB",
            )
        )
    book.add(landing, "fit/hostile-user/empty.fit", b"", "empty file")
    book.add(
        landing,
        "fit/hostile-user/not-a-fit.fit",
        b"This is a text file, not a FIT file.\n" * 40,
        "a text file named .fit",
    )
    for index, (steps, data) in enumerate(fit_mutants(raw, MUTANTS)):
        book.add(
            landing,
            f"fit/fuzz-user/mutant-{index:02d}.fit",
            data,
            f"mutation of {MUTATED_FIT}: {steps}",
        )


def _repeats(levels: int, times: int) -> dict:
    block: dict = {"kind": "work", "duration": "1min"}
    for _ in range(levels):
        block = {"repeat": times, "intervals": [block]}
    return block


def _plan(name: str, intervals: list) -> bytes:
    import yaml

    document = {
        "plan": name,
        "sport": "running",
        "sessions": [{"date": "2026-03-10", "name": name, "intervals": intervals}],
    }
    return yaml.safe_dump(document, sort_keys=False).encode()


def add_hostile_plans(landing: Path, book: Landing) -> None:
    def put(name: str, data: bytes, what: str) -> None:
        book.add(landing, f"plans/hostile-user/{name}", data, what)

    put(
        "repeats-1e10.yaml",
        _plan("r10", [_repeats(5, 100)]),
        "repeats of 100 nested 5 deep: 10^10 steps",
    )
    put(
        "repeats-1e8.yaml",
        _plan("r8", [_repeats(4, 100)]),
        "repeats of 100 nested 4 deep (within the depth bound): 10^8 steps",
    )
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        laughs.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    laughs += ["plan: laughs", "sessions: [{date: 2026-03-10, intervals: *i}]"]
    put("alias-bomb.yaml", "\n".join(laughs).encode() + b"\n", "YAML alias bomb (9^9 nodes)")
    put(
        "steps-10001.yaml",
        _plan("long", [{"kind": "work", "duration": f"{1 + k % 5}min"} for k in range(10_001)]),
        "one session of 10,001 steps",
    )
    put(
        "deep-list.yaml",
        b"plan: deep\nsessions: " + b"[" * DEEP + b"]" * DEEP + b"\n",
        f"a YAML flow list nested {DEEP:,} deep",
    )


def add_landing_tricks(landing: Path, outside: Path, book: Landing) -> None:
    push = landing / "garmin/push"
    push.mkdir(parents=True, exist_ok=True)
    os.symlink("/etc/passwd", push / "x.json")
    book.inputs.append(Input("garmin/push/x.json", "symbolic link to /etc/passwd"))
    outside.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIT_FIXTURES / OUTSIDE_FIT, outside / "stolen.fit")
    os.symlink(outside, landing / "fit/evil", target_is_directory=True)
    book.inputs.append(
        Input("fit/evil", "user folder that is a link to a folder outside landing (a FIT file)")
    )
    os.mkfifo(push / "fifo.json")
    book.inputs.append(Input("garmin/push/fifo.json", "FIFO (opening it would block)"))
    book.add(landing, "misc/notes.txt", b"nothing to ingest\n", "file in an unknown folder")


# --------------------------------------------------------------------------- the run


@dataclass
class Run:
    exit_code: int
    wall_s: float
    maxrss_mb: float  # ru_maxrss of wait4: the largest single process of the tree
    tree_peak_mb: float  # sampled sum over the process tree
    timed_out: bool
    stdout: str
    stderr: str


def _tree_rss_kb(root: int) -> int:
    """Resident memory of ``root`` and all its descendants (walks /proc once)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, todo, page_kb = 0, [root], os.sysconf("SC_PAGE_SIZE") // 1024
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * page_kb
        except OSError:
            pass
        todo.extend(children.get(pid, ()))
    return total


def run_wearhouse(home: Path, timeout_s: float, as_bytes: int | None) -> Run:
    """``wearhouse run --home HOME`` in a child process: exit code, wall time, peak RSS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEARHOUSE_")}
    env.pop("DAGSTER_HOME", None)  # an ephemeral instance: nothing outside HOME is touched
    # A native abort (an allocation refused under the limit) then still shows the Python
    # stack that asked for it.
    env["PYTHONFAULTHANDLER"] = "1"

    def limit() -> None:
        if as_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))

    out_path, err_path = home / "run.stdout", home / "run.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        began = time.perf_counter()
        child = subprocess.Popen(
            [str(WEARHOUSE), "run", "--home", str(home)],
            stdout=out,
            stderr=err,
            env=env,
            cwd=home,
            preexec_fn=limit,
            start_new_session=True,  # its own process group: a timeout kills the workers too
        )
        tree_peak, timed_out = 0, False
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            tree_peak = max(tree_peak, _tree_rss_kb(child.pid))
            if time.perf_counter() - began > timeout_s and not timed_out:
                timed_out = True
                os.killpg(child.pid, signal.SIGKILL)
            time.sleep(SAMPLE_EVERY_S)
        wall = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Run(
        exit_code=child.returncode,
        wall_s=wall,
        maxrss_mb=usage.ru_maxrss / 1024,  # KB on Linux
        tree_peak_mb=tree_peak / 1024,
        timed_out=timed_out,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


# --------------------------------------------------------------------------- outcomes


def quarantine(home: Path) -> list[tuple]:
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            "SELECT input_path, stage, item_index, reason FROM quarantine "
            "ORDER BY input_path, item_index NULLS FIRST"
        ).fetchall()


def bronze_rows(home: Path) -> dict[str, dict[str, int]]:
    """Rows per bronze table for each ``source_path`` (one Parquet part per input)."""
    import polars as pl

    out: dict[str, dict[str, int]] = {}
    for part in sorted((home / "lake" / "bronze").glob("*/*.parquet")):
        table = part.parent.name
        counts = pl.scan_parquet(part).group_by("source_path").len().collect()
        for path, rows in counts.iter_rows():
            tables = out.setdefault(path, {})
            tables[table] = tables.get(table, 0) + rows
    return out


def ledger(home: Path) -> dict[str, dict]:
    import polars as pl

    parts = sorted((home / "lake" / "raw" / "ledger").glob("*.parquet"))
    frame = pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")
    return {row["path"]: row for row in frame.iter_rows(named=True)}


def warehouse_counts(home: Path) -> dict[str, int]:
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_type = 'BASE TABLE' ORDER BY table_name"
        ).fetchall()
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for (t,) in tables}


def sessions_by_user(home: Path) -> dict[str, int]:
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return dict(
            con.execute(
                "SELECT user_id, count(*) FROM sessions GROUP BY user_id ORDER BY user_id"
            ).fetchall()
        )


def _rows_fingerprint(path: Path) -> str:
    """The rows of a Parquet file, whatever their order and encoding."""
    import polars as pl

    hashes = pl.read_parquet(path).hash_rows(seed=0).sort()
    return hashlib.sha256(hashes.to_numpy().tobytes()).hexdigest()


def home_files(home: Path) -> dict[str, tuple]:
    """Every lake file and the warehouse file: mtime, content hash and, for derived Parquet
    files (rewritten by any run), a fingerprint of their rows. Tells whether a run wrote a
    file, and whether what it wrote differs."""
    out = {}
    paths = [*sorted((home / "lake").rglob("*")), home / "warehouse.duckdb"]
    for path in paths:
        if not path.is_file() or path.name == ".wearhouse-run.lock":
            continue
        name = str(path.relative_to(home))
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(MB):
                digest.update(chunk)
        derived = name.startswith(("lake/silver/", "lake/gold/")) and name.endswith(".parquet")
        rows = _rows_fingerprint(path) if derived else digest.hexdigest()
        out[name] = (path.stat().st_mtime_ns, digest.hexdigest(), rows)
    return out


def compare(before: dict, after: dict) -> dict[str, dict[str, int]]:
    """Per lake area (raw, bronze, quarantine, silver, gold; the warehouse file): files
    added, removed, rewritten with the same bytes, with the same rows in other bytes, and
    with other rows."""
    out: dict[str, dict[str, int]] = {}
    for name in sorted(before.keys() | after.keys()):
        parts = Path(name).parts
        area = "/".join(parts[:2]) if parts[0] == "lake" else parts[0]
        if name not in before:
            change = "added"
        elif name not in after:
            change = "removed"
        elif before[name] == after[name]:
            continue
        elif before[name][1] == after[name][1]:
            change = "rewritten, same bytes"
        elif before[name][2] == after[name][2] and name.endswith(".parquet"):
            change = "rewritten, same rows"
        else:
            change = "rewritten, other content"
        counts = out.setdefault(area, {})
        counts[change] = counts.get(change, 0) + 1
    return out


def _short(text: str, width: int = 170) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def outcome_table(home: Path, inputs: list[Input]) -> tuple[list[str], list[str]]:
    """Markdown rows (input, what, outcome), and the problems: inputs with no outcome at all,
    and rows quarantined for a path that is not an input."""
    records = quarantine(home)
    rows_by_path = bronze_rows(home)
    entries = ledger(home)
    by_path: dict[str, list[tuple]] = {}
    for path, stage, item, reason in records:
        by_path.setdefault(path, []).append((stage, item, reason))
    lines, problems = [], []
    for item in inputs:
        parts = []
        quarantined = by_path.get(item.path, [])
        whole = [r for r in quarantined if r[1] is None]
        items = [r for r in quarantined if r[1] is not None]
        for stage, _, reason in whole:
            parts.append(f"**quarantined** [{stage}]: {_short(reason)}")
        if items:
            stages = sorted({r[0] for r in items})
            indexes = ", ".join(str(r[1]) for r in items[:5]) + (", …" if len(items) > 5 else "")
            parts.append(
                f"{len(items)} item(s) refused [{', '.join(stages)}] (item {indexes}): "
                f"{_short(items[0][2], 120)}"
            )
        produced = rows_by_path.get(item.path, {})
        if produced:
            parts.append("rows: " + ", ".join(f"{t} {n:,}" for t, n in sorted(produced.items())))
        entry = entries.get(item.path)
        if not parts:
            if entry is None:
                parts.append("not in the ledger")
                problems.append(f"{item.path}: not in the ledger, no outcome")
            else:
                parts.append(f"ledger kind {entry['kind']}: no rows, not quarantined")
                if not item.good:
                    problems.append(f"{item.path}: no rows and no quarantine record")
        lines.append(f"| `{item.path}` | {item.what} | {'; '.join(parts)} |")
    known = {i.path for i in inputs}
    for path in sorted(set(by_path) - known):
        problems.append(f"quarantine record for an unexpected path {path}")
    return lines, problems


def run_line(name: str, run: Run, body_mb: float | None = None) -> str:
    ratio = f" ({run.maxrss_mb / body_mb:.2f}× the body)" if body_mb else ""
    state = "TIMED OUT" if run.timed_out else f"exit {run.exit_code}"
    return (
        f"| {name} | {state} | {run.wall_s:.1f} | {run.maxrss_mb:,.0f}{ratio} "
        f"| {run.tree_peak_mb:,.0f} |"
    )


def failure_text(run: Run) -> str:
    if run.exit_code == 0 and not run.timed_out:
        return ""
    return "\n".join(run.stderr.strip().splitlines()[-60:])


# --------------------------------------------------------------------------- main


def build_home(scratch: Path, name: str) -> Path:
    home = scratch / name
    shutil.rmtree(home, ignore_errors=True)  # a kept folder from an earlier run
    (home / "landing").mkdir(parents=True)
    return home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="no 200 MB body, no gzip bomb")
    parser.add_argument("--timeout-min", type=float, default=20.0)
    parser.add_argument("--as-gib", type=float, default=8.0, help="RLIMIT_AS of the run; 0: none")
    parser.add_argument("--body-mb", type=float, default=200.0)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    timeout_s = args.timeout_min * 60
    as_bytes = int(args.as_gib * GIB) or None
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="wearhouse-hostile-", dir="/tmp"))
    scratch.mkdir(parents=True, exist_ok=True)
    ok = True
    try:
        print(f"# hostile inputs ({'quick' if args.quick else 'full'})", flush=True)
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / GIB:.0f} GiB RAM, "
            f"Python {platform.python_version()}; RLIMIT_AS "
            f"{f'{args.as_gib:g} GiB' if as_bytes else 'none'}, timeout {args.timeout_min:g} min",
            flush=True,
        )
        big_body = None
        if not args.quick:
            from benchmarks.garmin_ingest_memory import generate

            big_body = scratch / "dailies-body.json"
            if not big_body.exists():
                began = time.perf_counter()
                info = generate("dailies", args.body_mb, big_body)
                print(f"generated the dailies body: {info} in {time.perf_counter() - began:.0f} s")
        body_mb = big_body.stat().st_size / MB if big_body else None
        results = []

        # Reference: the good inputs alone.
        home = build_home(scratch, "good")
        add_good(home / "landing", Landing())
        good_run = run_wearhouse(home, timeout_s, as_bytes)
        results.append(run_line("good inputs only", good_run))
        if not args.keep:
            shutil.rmtree(home)

        # The hostile landing.
        home = build_home(scratch, "hostile")
        landing = home / "landing"
        book = Landing()
        began = time.perf_counter()
        add_good(landing, book)
        add_hostile_push(landing, book)
        if big_body:
            os.link(big_body, landing / "garmin/push/dailies-200mb.json")
            book.inputs.append(
                Input("garmin/push/dailies-200mb.json", f"{body_mb:.0f} MB body of dailies")
            )
        add_hostile_fit(landing, book, bomb=not args.quick)
        add_hostile_plans(landing, book)
        add_landing_tricks(landing, scratch / "outside", book)
        print(f"built {len(book.inputs)} inputs in {time.perf_counter() - began:.0f} s", flush=True)
        first = run_wearhouse(home, timeout_s, as_bytes)
        results.append(run_line("hostile landing, first run", first, body_mb))
        print(results[-1], flush=True)
        if failure_text(first):
            ok = False
            print("\n## run failed: stderr tail\n```\n" + failure_text(first) + "\n```")
        lines, problems = outcome_table(home, book.inputs) if first.exit_code == 0 else ([], [])
        counts, users = {}, {}
        if first.exit_code == 0:
            counts, users = warehouse_counts(home), sessions_by_user(home)
            quarantine_rows = quarantine(home)
            before = home_files(home)
            second = run_wearhouse(home, timeout_s, as_bytes)
            results.append(run_line("hostile landing, second run", second))
            changes = compare(before, home_files(home))
            same_counts = warehouse_counts(home) == counts
            same_quarantine = quarantine(home) == quarantine_rows
            listing = subprocess.run(
                [str(WEARHOUSE), "quarantine", "--home", str(home)],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        if not args.keep:
            shutil.rmtree(home)

        if big_body:
            home = build_home(scratch, "big")
            add_good(home / "landing", Landing())
            os.link(big_body, home / "landing/garmin/push/dailies-200mb.json")
            big = run_wearhouse(home, timeout_s, as_bytes)
            results.append(run_line(f"good inputs + the {body_mb:.0f} MB body", big, body_mb))
            if failure_text(big):
                ok = False
                print("\n## 200 MB run failed: stderr tail\n```\n" + failure_text(big) + "\n```")
            if not args.keep:
                shutil.rmtree(home)

        print("\n## Runs\n")
        print("| run | outcome | wall s | peak RSS, largest process (MB) | peak RSS, tree (MB) |")
        print("|---|---|---|---|---|")
        print("\n".join(results))
        if counts:
            print("\n## Second run (idempotence)\n")
            wrote = json.dumps(changes) if changes else "none"
            print(f"files the second run wrote, by area: {wrote}")
            print(f"warehouse row counts unchanged: {same_counts}")
            print(f"quarantine unchanged: {same_quarantine}")
            print("`wearhouse quarantine --home TMP` ends: " + listing.splitlines()[-1])
            content_changed = any(
                change not in ("rewritten, same bytes", "rewritten, same rows")
                for area, kinds in changes.items()
                if area != "warehouse.duckdb"
                for change in kinds
            )
            ok = ok and second.exit_code == 0 and same_counts and same_quarantine
            ok = ok and not content_changed
            print("\n## Warehouse after the first run\n")
            print("sessions per user: " + json.dumps(users))
            print("rows per table: " + json.dumps(counts))
            if "evil" in users or users.get("good-user", 0) < len(GOOD_FIT):
                ok = False
                print("PROBLEM: a good FIT file did not land, or the linked folder was read")
            print("\n## Outcome of every input\n")
            print("| input | what | outcome |")
            print("|---|---|---|")
            print("\n".join(lines))
            if problems:
                ok = False
                print("\n## Problems\n")
                print("\n".join(f"- {p}" for p in problems))
            print("\n## wearhouse run summary (first run)\n```")
            print(first.stdout.strip())
            print("```")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
