"""Breadth check on a folder of real FIT files: the whole pipeline, file by file.

What it does
------------
Copies every ``*.fit`` file under FOLDER into a fresh temporary home
(``landing/fit/<user>/``), runs the real pipeline there (``wearhouse run`` in a child
process: a crash of any kind is counted, never fatal to the check) and reads the warehouse:

* per file: the sessions found against the session messages the file holds (a file with
  records but no session message should give one synthesized session), laps found against its
  lap messages, or the ``quarantine`` reason;
* per lap (``intervals``, kind ``lap``): distance and timer against the watch's own lap totals
  (``device_distance_m``, ``device_timer_s``); distance error in % for laps of ≥ 200 m by the
  device; pool-swim laps in metres against the pool length; negative ``timer_s``.

What the file holds comes from an independent decode with fitdecode (file_id maker and
product, session sports, pool length), so a bug in the pipeline's decoder shows as a missing
session rather than hiding itself.

A lap off by more than 5 % counts as *flagged* when the warehouse says why it may be off: the
session's ``integrity`` is not ``ok``, a boundary lies outside the samples
(``start_out_of_range``/``end_out_of_range``), or the lap has sample gaps (``gap_count``).
The lap distance error is given over all scored laps and over the unflagged ones. A file
whose activity is also in another file of the folder (exported twice, the SDK's copies of one
recording) counts its sessions as found when the warehouse keeps them from the other file
(``kept from a copy``: the newest file of one activity wins).

Files are split deterministically by the parity of their sha256: even → ``tuning``, odd →
``held_out``; every summary is given for both. When the whole run fails, the files are run
again in halves until each failing file is found alone (``crashes``), and the numbers come
from the runs that succeeded.

Targets (issue 18): 0 crashes, every session found, lap distance vs device median ≤ 0.05 %
and p95 ≤ 0.5 % (laps ≥ 200 m), no lap off > 5 % without a flag, pool-swim laps within one
pool length, no negative timer.

How to run (from the repository root)::

    .venv/bin/python -m benchmarks.corpus_check /work/corpus [--user corpus]
        [--out benchmarks/results/corpus_check.json] [--markdown benchmarks/RESULTS-corpus.md]
        [--keep HOME]

Prints a table per file, then summaries by maker, by sport and overall, each for the tuning
and held-out halves.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
WEARHOUSE = [sys.executable, "-m", "pipelines.cli"]
MIN_SCORED_LAP_M = 200.0
OFF_PCT = 5.0
SPLITS = ("tuning", "held_out")


@dataclass
class Reference:
    """What the file holds, by fitdecode (independent of the pipeline's decoder)."""

    maker: str = ""
    product: str = ""
    file_type: str = ""
    sports: list[str] = field(default_factory=list)
    session_starts: list[float] = field(default_factory=list)
    sessions: int = 0
    laps: int = 0
    records: int = 0  # with a timestamp (a record without one places nothing)
    first_record_s: float | None = None
    pool_length_m: float | None = None
    decode_error: str = ""


def _value(frame, name):
    try:
        return frame.get_value(name) if frame.has_field(name) else None
    except Exception:  # a field fitdecode cannot convert: treated as absent
        return None


def reference(blob: bytes) -> Reference:
    import fitdecode

    ref = Reference()
    try:
        with fitdecode.FitReader(
            io.BytesIO(blob),
            check_crc=fitdecode.CrcCheck.DISABLED,
            error_handling=fitdecode.ErrorHandling.IGNORE,
        ) as reader:
            for frame in reader:
                if not isinstance(frame, fitdecode.FitDataMessage):
                    continue
                if frame.name == "file_id" and not ref.file_type:
                    ref.file_type = str(_value(frame, "type") or "")
                    ref.maker = str(_value(frame, "manufacturer") or "")
                    product = _value(frame, "garmin_product")
                    if product is None:
                        product = _value(frame, "product_name") or _value(frame, "product")
                    ref.product = str(product or "")
                elif frame.name == "session":
                    ref.sessions += 1
                    start = _value(frame, "start_time")
                    if hasattr(start, "timestamp"):
                        ref.session_starts.append(start.timestamp())
                    sport, sub = _value(frame, "sport"), _value(frame, "sub_sport")
                    generic = sub in (None, "generic")
                    ref.sports.append(str(sport) if generic else f"{sport}/{sub}")
                    pool = _value(frame, "pool_length")
                    if isinstance(pool, (int, float)) and pool > 0:
                        ref.pool_length_m = float(pool)
                elif frame.name == "lap":
                    ref.laps += 1
                elif frame.name == "record":
                    stamp = _value(frame, "timestamp")
                    if hasattr(stamp, "timestamp"):
                        ref.records += 1
                        if ref.first_record_s is None:
                            ref.first_record_s = stamp.timestamp()
    except Exception as exc:  # damaged tail: what was read so far stands
        ref.decode_error = f"{type(exc).__name__}: {exc}"[:160]
    return ref


@dataclass
class FileResult:
    file: str
    sha256: str
    split: str
    maker: str
    product: str
    sport: str
    file_type: str
    expected_sessions: int
    expected_laps: int
    sessions: int = 0
    sessions_elsewhere: int = 0  # the same activity kept from another file (a newer copy)
    laps: int = 0
    quarantine: str = ""
    crashed: str = ""
    integrity: str = ""
    scored_laps: int = 0
    lap_err_pct: list[float] = field(default_factory=list)
    lap_err_unflagged_pct: list[float] = field(default_factory=list)
    lap_timer_err_s: list[float] = field(default_factory=list)
    off_unflagged: int = 0
    off_flagged: int = 0
    pool_laps: int = 0
    pool_off: int = 0
    negative_timer: int = 0

    @property
    def outcome(self) -> str:
        if self.crashed:
            return "CRASH"
        if self.quarantine:
            return "quarantined"
        if self.sessions + self.sessions_elsewhere < self.expected_sessions:
            return "sessions missing"
        if self.sessions_elsewhere:
            return "kept from a copy"
        return "ok"


def _run(home: Path, files: list[Path], user: str) -> tuple[bool, str]:
    """One pipeline run over ``files`` in a fresh ``home``; (success, failure text)."""
    shutil.rmtree(home, ignore_errors=True)
    target = home / "landing" / "fit" / user
    target.mkdir(parents=True)
    for path in files:
        shutil.copyfile(path, target / path.name)
    proc = subprocess.run(
        [*WEARHOUSE, "run", "--home", str(home)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    text = (proc.stderr.strip().splitlines() or [""])[-1] if proc.returncode else ""
    failed = [line for line in proc.stderr.splitlines() if line.startswith("FAILED")]
    return proc.returncode == 0, (failed[0] if failed else text)[:300]


def _read(home: Path) -> dict[str, list[dict]]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:

        def rows(query: str) -> list[dict]:
            cur = con.execute(query)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

        return {
            "sessions": rows(
                "SELECT session_id, source_sha256, sport, sub_sport, integrity, n_laps, "
                "epoch(start_time_utc) AS start_s FROM sessions"
            ),
            "laps": rows(
                "SELECT i.session_id, s.source_sha256, s.sport, s.sub_sport, s.integrity, "
                "i.interval_index, i.distance_m, i.timer_s, i.device_distance_m, "
                "i.device_timer_s, i.start_out_of_range, i.end_out_of_range, i.gap_count "
                "FROM intervals i JOIN sessions s USING (session_id) WHERE i.kind = 'lap'"
            ),
            "quarantine": rows("SELECT input_path, input_sha256, reason FROM quarantine"),
        }


def run_batches(files: list[Path], user: str, workdir: Path) -> tuple[list[dict], dict[str, str]]:
    """Warehouse rows of every run that succeeded; crashes by file name (a failing batch is
    halved until each failing file runs alone)."""
    results: list[dict] = []
    crashes: dict[str, str] = {}
    pending = [files]
    count = 0
    while pending:
        batch = pending.pop()
        count += 1
        home = workdir / f"run{count}"
        started = time.perf_counter()
        ok, why = _run(home, batch, user)
        print(
            f"  run {count}: {len(batch)} files, {'ok' if ok else 'FAILED'} "
            f"in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        if ok:
            results.append(_read(home))
        elif len(batch) == 1:
            crashes[batch[0].name] = why
        else:
            half = len(batch) // 2
            pending += [batch[half:], batch[:half]]
        shutil.rmtree(home, ignore_errors=True)
    return results, crashes


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _maker(ref: Reference, manifest: dict[str, dict], sha: str) -> str:
    return ref.maker or manifest.get(sha, {}).get("maker", "") or "unknown"


def score(
    files: list[Path], refs: dict[str, Reference], runs: list[dict], crashes, user: str
) -> list[FileResult]:
    by_sha: dict[str, FileResult] = {}
    for path in files:
        blob = path.read_bytes()
        sha = hashlib.sha256(blob).hexdigest()
        # The lake keys a FIT file by the sha256 of its owner, a newline and its bytes.
        ledger_sha = hashlib.sha256(f"{user}\n".encode() + blob).hexdigest()
        ref = refs[path.name]
        by_sha[ledger_sha] = FileResult(
            file=path.name,
            sha256=sha,
            split="tuning" if int(sha, 16) % 2 == 0 else "held_out",
            maker=ref.maker or "unknown",
            product=ref.product,
            sport=",".join(dict.fromkeys(ref.sports)) or "none",
            file_type=ref.file_type,
            # Records without a session message still make one (synthesized) session.
            expected_sessions=ref.sessions or (1 if ref.records > 1 else 0),
            expected_laps=ref.laps,
            crashed=crashes.get(path.name, ""),
        )
    pool_length = {r.file: refs[r.file].pool_length_m for r in by_sha.values()}
    for run in runs:
        for row in run["quarantine"]:
            result = by_sha.get(row["input_sha256"])
            if result:
                result.quarantine = str(row["reason"])[:200]
        for row in run["sessions"]:
            result = by_sha.get(row["source_sha256"])
            if result:
                result.sessions += 1
                result.laps += row["n_laps"]
                if row["integrity"] != "ok":
                    result.integrity = row["integrity"]
        # Sessions a file holds that the warehouse keeps from another file: the same activity
        # in two files (exported twice, the SDK's copies of one recording) is one session.
        starts = sorted(
            (float(row["start_s"]), row["source_sha256"])
            for row in run["sessions"]
            if row["start_s"] is not None
        )
        for ledger_sha, result in by_sha.items():
            ref = refs[result.file]
            own = [t for t, sha in starts if sha == ledger_sha]
            expected = ref.session_starts or (
                [ref.first_record_s] if ref.first_record_s is not None and ref.records > 1 else []
            )
            for t in expected:
                # Each own session answers one expected start (sessions can share a second).
                match = next((o for o in own if abs(t - o) <= 2.0), None)
                if match is not None:
                    own.remove(match)
                elif any(abs(t - o) <= 2.0 for o, sha in starts if sha != ledger_sha):
                    result.sessions_elsewhere += 1
        for lap in run["laps"]:
            result = by_sha.get(lap["source_sha256"])
            if result is None:
                continue
            if lap["timer_s"] is not None and lap["timer_s"] < -1e-9:
                result.negative_timer += 1
            device, ours = lap["device_distance_m"], lap["distance_m"]
            if device is None or ours is None:
                continue
            pool = pool_length[result.file]
            is_pool = lap["sub_sport"] == "lap_swimming" or (
                lap["sport"] == "swimming" and pool is not None
            )
            if is_pool and pool:
                result.pool_laps += 1
                if abs(ours - device) > pool + 1e-6:
                    result.pool_off += 1
            if device < MIN_SCORED_LAP_M:
                continue
            err = abs(ours - device) / device * 100.0
            result.scored_laps += 1
            result.lap_err_pct.append(err)
            if lap["timer_s"] is not None and lap["device_timer_s"] is not None:
                result.lap_timer_err_s.append(lap["timer_s"] - lap["device_timer_s"])
            flagged = (
                lap["integrity"] != "ok"
                or lap["start_out_of_range"]
                or lap["end_out_of_range"]
                or (lap["gap_count"] or 0) > 0
            )
            if not flagged:
                result.lap_err_unflagged_pct.append(err)
            if err > OFF_PCT:
                if flagged:
                    result.off_flagged += 1
                else:
                    result.off_unflagged += 1
    return sorted(by_sha.values(), key=lambda r: (r.split, r.maker, r.file))


def summarize(results: list[FileResult]) -> dict:
    errs = [e for r in results for e in r.lap_err_pct]
    clean = [e for r in results for e in r.lap_err_unflagged_pct]
    timer = [abs(e) for r in results for e in r.lap_timer_err_s]
    return {
        "files": len(results),
        "crashes": sum(bool(r.crashed) for r in results),
        "quarantined": sum(bool(r.quarantine) and not r.crashed for r in results),
        "sessions_expected": sum(r.expected_sessions for r in results if not r.crashed),
        "sessions_found": sum(r.sessions for r in results),
        "sessions_in_copies": sum(r.sessions_elsewhere for r in results),
        "files_missing_sessions": sum(r.outcome == "sessions missing" for r in results),
        "laps_expected": sum(r.expected_laps for r in results if not r.crashed),
        "laps_found": sum(r.laps for r in results),
        "scored_laps": len(errs),
        "lap_err_median_pct": _pct(errs, 0.5),
        "lap_err_p95_pct": _pct(errs, 0.95),
        "unflagged_laps": len(clean),
        "lap_err_unflagged_median_pct": _pct(clean, 0.5),
        "lap_err_unflagged_p95_pct": _pct(clean, 0.95),
        "lap_timer_err_median_s": _pct(timer, 0.5),
        "lap_timer_err_p95_s": _pct(timer, 0.95),
        "off_5pct_unflagged": sum(r.off_unflagged for r in results),
        "off_5pct_flagged": sum(r.off_flagged for r in results),
        "pool_laps": sum(r.pool_laps for r in results),
        "pool_laps_off": sum(r.pool_off for r in results),
        "negative_timer_laps": sum(r.negative_timer for r in results),
    }


def _fmt(value, digits=3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


SUMMARY_COLUMNS = (
    ("files", "files"),
    ("crashes", "crash"),
    ("quarantined", "quar"),
    ("sessions", "sess found/exp"),
    ("files_missing_sessions", "files missing sess"),
    ("laps", "laps found/exp"),
    ("scored_laps", "scored"),
    ("lap_err_median_pct", "med %"),
    ("lap_err_p95_pct", "p95 %"),
    ("unflagged_laps", "unflag laps"),
    ("lap_err_unflagged_median_pct", "unflag med %"),
    ("lap_err_unflagged_p95_pct", "unflag p95 %"),
    ("lap_timer_err_p95_s", "timer p95 s"),
    ("off_5pct_unflagged", ">5% unflag"),
    ("off_5pct_flagged", ">5% flag"),
    ("pool", "pool off/laps"),
    ("negative_timer_laps", "neg timer"),
)


def _summary_cells(s: dict) -> list[str]:
    cells = []
    for key, _ in SUMMARY_COLUMNS:
        if key == "sessions":
            found = s["sessions_found"] + s["sessions_in_copies"]
            cells.append(f"{found}/{s['sessions_expected']}")
        elif key == "laps":
            cells.append(f"{s['laps_found']}/{s['laps_expected']}")
        elif key == "pool":
            cells.append(f"{s['pool_laps_off']}/{s['pool_laps']}")
        else:
            cells.append(_fmt(s[key]))
    return cells


def summary_table(groups: dict[str, list[FileResult]], label: str) -> list[list[str]]:
    header = [label, *(title for _, title in SUMMARY_COLUMNS)]
    body = [[name, *_summary_cells(summarize(rows))] for name, rows in sorted(groups.items())]
    return [header, *body]


def print_table(table: list[list[str]], out) -> None:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for n, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)


def markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table[1:]]
    return "\n".join(lines)


def file_table(results: list[FileResult]) -> list[list[str]]:
    header = [
        "split", "file", "maker", "product", "sport", "outcome", "sess", "laps",
        "med %", "max %", ">5% unflag", "pool off", "neg timer", "reason",
    ]  # fmt: skip
    body = []
    for r in results:
        body.append(
            [
                r.split,
                r.file[:48],
                r.maker[:18],
                r.product[:18],
                r.sport[:28],
                r.outcome,
                f"{r.sessions}+{r.sessions_elsewhere}/{r.expected_sessions}"
                if r.sessions_elsewhere
                else f"{r.sessions}/{r.expected_sessions}",
                f"{r.laps}/{r.expected_laps}",
                _fmt(_pct(r.lap_err_pct, 0.5)),
                _fmt(max(r.lap_err_pct) if r.lap_err_pct else None),
                str(r.off_unflagged),
                f"{r.pool_off}/{r.pool_laps}" if r.pool_laps else "",
                str(r.negative_timer) if r.negative_timer else "",
                (r.crashed or r.quarantine or r.integrity)[:80],
            ]
        )
    return [header, *body]


def _sport_group(r: FileResult) -> str:
    first = r.sport.split(",")[0]
    return first if "," not in r.sport else f"multi ({first}, …)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--user", default="corpus")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/corpus_check.json")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temp dir)")
    args = parser.parse_args(argv)

    files = sorted(p for p in args.folder.rglob("*") if p.is_file() and p.suffix.lower() == ".fit")
    names = [p.name for p in files]
    if len(set(names)) != len(names):
        print("file names must be unique across the folder", file=sys.stderr)
        return 2
    print(f"corpus_check: {len(files)} FIT files under {args.folder}", file=sys.stderr)
    refs = {p.name: reference(p.read_bytes()) for p in files}

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="wearhouse-corpus-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        runs, crashes = run_batches(files, args.user, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    results = score(files, refs, runs, crashes, args.user)

    out = sys.stdout
    print("\n== per file", file=out)
    print_table(file_table(results), out)
    sections = []
    for split in SPLITS:
        rows = [r for r in results if r.split == split]
        by_maker: dict[str, list[FileResult]] = defaultdict(list)
        by_sport: dict[str, list[FileResult]] = defaultdict(list)
        for r in rows:
            by_maker[r.maker].append(r)
            by_sport[_sport_group(r)].append(r)
        sections.append((f"{split}: by maker", summary_table(by_maker, "maker")))
        sections.append((f"{split}: by sport", summary_table(by_sport, "sport")))
    overall = {split: [r for r in results if r.split == split] for split in SPLITS}
    overall["all"] = results
    sections.append(("overall", summary_table(overall, "split")))
    for title, table in sections:
        print(f"\n== {title}", file=out)
        print_table(table, out)
    print(f"\npipeline runs took {elapsed:.0f} s", file=out)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "summary": {k: summarize(v) for k, v in overall.items()},
                "files": [asdict(r) | {"outcome": r.outcome} for r in results],
            },
            indent=1,
        )
    )
    if args.markdown:
        parts = [f"### {title}\n\n{markdown_table(table)}\n" for title, table in sections]
        parts.append(f"### per file\n\n{markdown_table(file_table(results))}\n")
        args.markdown.write_text("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
