"""Garmin push ingest throughput and peak memory: the project's path against a naive baseline.

What it measures
----------------
A generated landing folder of push bodies (``--mb``, default 200 MB, 1 MB = 2**20 bytes;
compact JSON as Garmin sends it; deterministic for ``--seed``), a mix by bytes of

* ``activityDetails`` bodies of ``--activity-items`` items (default 8), each a smart-recorded
  run of about ``--samples`` samples (default 3,600; 1–9 s gaps, so about 5 h) with laps every
  km (``pipelines.garmin.generate.activity_details``), and
* ``dailies`` bodies of ``--dailies-items`` users' days (default 30), each with 5,760
  heart-rate samples (every 15 s; ``pipelines.garmin.generate.daily``),

``--dailies-share`` of the bytes being dailies (default 0.25). Every method does the same
end-to-end work per file (read the bytes, sha256 them for lineage, decode, build the bronze
tables ``garmin_activity_details``, ``garmin_activity_samples``, ``garmin_activity_laps``,
``garmin_dailies`` and ``garmin_timeseries`` with lineage columns, write one Parquet part per
file and table):

* ``naive``: ``json.loads``, then a per-item and per-sample Python loop building one row dict
  per output row (datetimes per row, values converted one by one), then
  ``pl.DataFrame(rows, schema=...)`` per table — the usual integration code;
* ``parse_push``: the project's ``parse_push(raw).tables()``, then ``with_lineage`` and
  ``write_parquet`` per table;
* ``ingest``: the pipeline itself: ``register_landing`` (the raw ledger: lists and hashes the
  files) then ``ingest_push_files`` (parse, bronze parts written atomically, processed
  markers, quarantine), timed together;
* ``json_loads``: only ``json.loads`` of every body — not a method but the floor every path
  built on the standard library's decoder pays (the project's path decodes with msgspec,
  item by item, and leaves plain time-offset maps undecoded, so it is not bound by it).

Outputs are then checked to be equal table by table and file by file, exactly (floats bit for
bit; lineage columns aside; ``--no-check`` skips it), so the baseline is known to do the same
work.

Memory: each method runs in its own subprocess (``python -m benchmarks.garmin_ingest_speed
--worker METHOD ...``); the child resets its peak-RSS mark after its imports
(``/proc/self/clear_refs``), and its maximum RSS comes from ``os.wait4`` (that child's own
``getrusage``; ``RUSAGE_CHILDREN`` would be the maximum over all children). Peak MB therefore
includes the interpreter and Polars (``rss_after_imports_mb``); ``Δ MB`` is the peak above it
(the body's own bytes, read by the method, included). The memory target is stated against the
largest single body, so that is reported too.

Large body (``--large-mb``, default 100; 0 skips): the activityDetails items of the batch are
also written as one body of at least that size, and put through ``json.loads`` alone,
``parse_push`` (+ tables + Parquet) and ``naive``, each in its own subprocess, to show where
peak memory comes from.

How to run (from the repository root; about 2–4 minutes on a shared 2-core machine)::

    .venv/bin/python -m benchmarks.garmin_ingest_speed [--mb 200] [--large-mb 100]
        [--methods naive,parse_push,ingest,json_loads] [--seed 11] [--repeat 1] [--no-check]
        [--out benchmarks/results/garmin_ingest_speed.json]

``--repeat N`` runs the methods N times round-robin and reports each method's fastest run
(every run's time is kept in the JSON): on a shared machine, a burst of other load then slows
one run of a method rather than deciding its ratio.

Prints a table (items/s, MB/s, peak RSS, wall-time and CPU-time ratios vs ``naive``) and
writes JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.memory import reset_peak_rss, rss_mb

RESULTS = Path(__file__).resolve().parent / "results" / "garmin_ingest_speed.json"
METHODS = ("naive", "parse_push", "ingest", "json_loads")
WRITERS = ("naive", "parse_push", "ingest")  # methods whose outputs are compared
LARGE_METHODS = ("json_loads", "parse_push", "naive")
BASELINE = "naive"
TABLES = (
    "garmin_activity_details",
    "garmin_activity_samples",
    "garmin_activity_laps",
    "garmin_dailies",
    "garmin_timeseries",
)
MB = 2**20
EPOCH0 = 1_767_225_600  # 2026-01-01T00:00:00Z
COMPACT = (",", ":")
MEAN_GAP_S = 5  # generate.activity_details draws gaps of 1–9 s

# --------------------------------------------------------------------------------------------
# Generated landing folder
# --------------------------------------------------------------------------------------------


def generate(args: argparse.Namespace, landing: Path, large: Path | None) -> dict:
    """Write push bodies under ``landing/garmin/push/`` until ``args.mb`` MB, dailies making
    ``args.dailies_share`` of the bytes; also the large single body when ``large`` is given.

    Items are generated and serialized one body at a time, so this process stays small."""
    import numpy as np

    from pipelines.garmin.generate import activity_details, daily

    rng = np.random.default_rng(args.seed)
    push = landing / "garmin" / "push"
    users = [f"user-{k:03d}-{'abcdef'[k % 6]}" for k in range(args.users)]
    target = args.mb * MB
    size = {
        "bodies": 0,
        "bytes": 0,
        "items": 0,
        "activity_bodies": 0,
        "activity_items": 0,
        "activity_bytes": 0,
        "samples": 0,
        "laps": 0,
        "dailies_bodies": 0,
        "dailies_items": 0,
        "dailies_bytes": 0,
        "hr_samples": 0,
        "largest_body_bytes": 0,
    }
    large_handle = None
    large_bytes = 0
    large_items = 0
    if large is not None:
        large.parent.mkdir(parents=True, exist_ok=True)
        large_handle = large.open("wb")
        large_handle.write(b'{"activityDetails":[')
    activity_id = 21_000_000_000
    day = 0
    while size["bytes"] < target:
        dailies_due = size["dailies_bytes"] < args.dailies_share * (size["bytes"] + 1)
        if dailies_due:
            items = []
            for k in range(args.dailies_items):
                user = users[(day * args.dailies_items + k) % len(users)]
                items.append(daily(user, EPOCH0 + day * 86_400, rng))
            day += 1
            key, kind = "dailies", "dailies"
            size["hr_samples"] += sum(len(i["timeOffsetHeartRateSamples"]) for i in items)
            texts = [json.dumps(i, separators=COMPACT) for i in items]
        else:
            texts = []
            for _ in range(args.activity_items):
                activity_id += 1
                user = users[activity_id % len(users)]
                start = EPOCH0 + (activity_id % 365) * 86_400 + 6 * 3600
                item = activity_details(
                    user, activity_id, start, rng, duration_s=args.samples * MEAN_GAP_S
                )
                size["samples"] += len(item["samples"])
                size["laps"] += len(item["laps"])
                texts.append(json.dumps(item, separators=COMPACT))
            key, kind = "activityDetails", "activity"
            if large_handle is not None and large_bytes < args.large_mb * MB:
                for text in texts:
                    if large_bytes >= args.large_mb * MB:
                        break
                    large_handle.write((b"," if large_items else b"") + text.encode())
                    large_bytes += len(text)
                    large_items += 1
        raw = (f'{{"{key}":[' + ",".join(texts) + "]}").encode()
        n = size[f"{kind}_bodies"]
        folder = push / f"2026-01-{1 + size['bodies'] % 28:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{key}-{n:04d}.json").write_bytes(raw)
        size["bodies"] += 1
        size["bytes"] += len(raw)
        size["items"] += len(texts)
        size[f"{kind}_bodies"] += 1
        size[f"{kind}_items"] += len(texts)
        size[f"{kind}_bytes"] += len(raw)
        size["largest_body_bytes"] = max(size["largest_body_bytes"], len(raw))
    if large_handle is not None:
        large_handle.write(b"]}")
        large_handle.close()
        size["large_body_bytes"] = large.stat().st_size
        size["large_body_items"] = large_items
    return size


def push_files(landing: Path) -> list[Path]:
    return sorted((landing / "garmin" / "push").rglob("*.json"))


# --------------------------------------------------------------------------------------------
# Naive baseline: json.loads + a Python loop building row dicts
# --------------------------------------------------------------------------------------------


def _utc(seconds):
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _local(seconds, offset):
    if seconds is None or offset is None:
        return None
    return datetime(1970, 1, 1) + timedelta(seconds=seconds + offset)


def _convert(value, kind: str):
    if value is None:
        return None
    return {"int": int, "float": float, "str": str, "bool": bool}[kind](value)


def naive_rows(raw: bytes) -> dict[str, list[dict]]:
    """One body → row dicts per bronze table, one loop iteration per item, sample and HR value."""
    from pipelines.garmin.push import ACTIVITY_FIELDS, SAMPLE_FIELDS
    from pipelines.garmin.summaries import SPECS

    body = json.loads(raw)
    rows: dict[str, list[dict]] = {table: [] for table in TABLES}
    known = {key for key, _, _ in SAMPLE_FIELDS}
    index = 0
    for summary_type, items in body.items():
        for item in items:
            base = {
                "summary_type": summary_type,
                "item_index": index,
                "user_id": str(item["userId"]),
                "summary_id": item.get("summaryId"),
            }
            if summary_type == "activityDetails":
                summary = item.get("summary") or {}
                activity_id = item.get("activityId", summary.get("activityId"))
                start = summary.get("startTimeInSeconds")
                offset = summary.get("startTimeOffsetInSeconds")
                row = {
                    **base,
                    "activity_id": activity_id,
                    "start_time_utc": _utc(start),
                    "start_time_local": _local(start, offset),
                    "utc_offset_s": offset,
                }
                for key, column, kind in ACTIVITY_FIELDS:
                    row[column] = _convert(summary.get(key), kind)
                rest = {k: v for k, v in item.items() if k not in ("samples", "laps")}
                row["raw_json"] = json.dumps(rest, separators=COMPACT)
                row["n_samples"] = len(item.get("samples") or [])
                row["n_laps"] = len(item.get("laps") or [])
                rows["garmin_activity_details"].append(row)
                ids = {"summary_id": base["summary_id"], "user_id": base["user_id"]}
                ids["activity_id"] = activity_id
                for i, sample in enumerate(item.get("samples") or []):
                    out = {**ids, "sample_index": i}
                    out["time_utc"] = _utc(sample["startTimeInSeconds"])
                    for key, column, kind in SAMPLE_FIELDS:
                        out[column] = _convert(sample.get(key), kind)
                    extra = {k: v for k, v in sample.items() if k not in known}
                    out["extra_json"] = json.dumps(extra, separators=COMPACT) if extra else None
                    rows["garmin_activity_samples"].append(out)
                for i, lap in enumerate(item.get("laps") or []):
                    lap_start = lap["startTimeInSeconds"]
                    rows["garmin_activity_laps"].append(
                        {
                            **ids,
                            "lap_index": i,
                            "start_epoch_s": lap_start,
                            "start_time_utc": _utc(lap_start),
                        }
                    )
            elif summary_type == "dailies":
                spec = SPECS["dailies"]
                start = item.get("startTimeInSeconds")
                offset = item.get("startTimeOffsetInSeconds")
                row = {
                    **base,
                    "start_time_utc": _utc(start),
                    "start_time_local": _local(start, offset),
                    "utc_offset_s": offset,
                }
                for key, column, kind in spec.fields:
                    row[column] = _convert(item.get(key), kind)
                # like the pipeline: the exploded heart-rate map is not repeated in raw_json
                series_keys = {key for key, _ in spec.series}
                unmodelled = {k: v for k, v in item.items() if k not in series_keys}
                row["raw_json"] = json.dumps(unmodelled, separators=COMPACT)
                rows["garmin_dailies"].append(row)
                for key, series in spec.series:
                    for offset_s, value in (item.get(key) or {}).items():
                        rows["garmin_timeseries"].append(
                            {
                                "summary_type": summary_type,
                                "summary_id": base["summary_id"],
                                "user_id": base["user_id"],
                                "series": series,
                                "offset_s": int(offset_s),
                                "time_utc": _utc(start + int(offset_s)),
                                "value": None if value is None else float(value),
                            }
                        )
            else:
                raise ValueError(f"the naive baseline does not handle {summary_type!r}")
            index += 1
    return rows


# --------------------------------------------------------------------------------------------
# Methods (run inside a worker process)
# --------------------------------------------------------------------------------------------


def _file_row(landing: Path, path: Path, raw: bytes) -> dict:
    return {
        "path": path.relative_to(landing).as_posix(),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "received_at": datetime.fromtimestamp(path.stat().st_mtime_ns / 1e9, UTC),
    }


def method_naive(landing: Path, out: Path) -> dict:
    import polars as pl

    from pipelines.garmin.push import BRONZE_TABLES
    from pipelines.lake.stage import with_lineage

    counts = {table: 0 for table in TABLES}
    for path in push_files(landing):
        raw = path.read_bytes()
        file_row = _file_row(landing, path, raw)
        rows = naive_rows(raw)
        del raw
        for table in TABLES:
            if rows[table]:
                frame = pl.DataFrame(rows[table], schema=BRONZE_TABLES[table])
                (out / table).mkdir(parents=True, exist_ok=True)
                target = out / table / f"{file_row['sha256']}.parquet"
                with_lineage(frame, file_row).write_parquet(target)
                counts[table] += frame.height
                del frame
            rows[table] = []
    return {"rows": counts}


def method_parse_push(landing: Path, out: Path) -> dict:
    from pipelines.garmin.push import parse_push
    from pipelines.lake.stage import with_lineage

    counts: dict[str, int] = {}
    refusals = 0
    for path in push_files(landing):
        raw = path.read_bytes()
        file_row = _file_row(landing, path, raw)
        parsed = parse_push(raw)
        del raw
        refusals += len(parsed.refusals)
        for table, frame in parsed.tables().items():
            if frame.height:
                (out / table).mkdir(parents=True, exist_ok=True)
                target = out / table / f"{file_row['sha256']}.parquet"
                with_lineage(frame, file_row).write_parquet(target)
                counts[table] = counts.get(table, 0) + frame.height
        del parsed
    return {"rows": counts, "refusals": refusals}


def method_ingest(landing: Path, out: Path) -> dict:
    from pipelines.garmin.ingest import ingest_push_files
    from pipelines.lake.layout import LakeLayout
    from pipelines.lake.ledger import register_landing

    layout = LakeLayout(out)
    t0 = time.perf_counter()
    registered = register_landing(landing, layout)
    register_s = time.perf_counter() - t0
    report = ingest_push_files(landing, layout)
    return {
        "rows": {t: n for t, n in report.rows.items() if n},
        "refusals": report.quarantined_items,
        "files_registered": registered.height,
        "register_s": register_s,
        "ingest_s": time.perf_counter() - t0 - register_s,
    }


def method_json_loads(landing: Path, out: Path) -> dict:
    items = 0
    for path in push_files(landing):
        body = json.loads(path.read_bytes())
        items += sum(len(v) for v in body.values())
        del body
    return {"items_decoded": items}


METHOD_FUNCTIONS = {
    "naive": method_naive,
    "parse_push": method_parse_push,
    "ingest": method_ingest,
    "json_loads": method_json_loads,
}

# --------------------------------------------------------------------------------------------
# Worker, check and driver
# --------------------------------------------------------------------------------------------


def worker(method: str, landing: Path, out: Path) -> None:
    """Child process: import everything, reset the peak-RSS mark, run once, print JSON."""
    import polars  # noqa: F401 — import cost and memory out of the measurement

    import pipelines.garmin.ingest
    import pipelines.garmin.push
    import pipelines.lake.ledger  # noqa: F401

    rss_imports = rss_mb()
    reset = reset_peak_rss()
    t0, cpu0 = time.perf_counter(), time.process_time()
    report = METHOD_FUNCTIONS[method](landing, out)
    report["seconds"] = time.perf_counter() - t0
    report["cpu_s"] = time.process_time() - cpu0  # all threads
    report["rss_after_imports_mb"] = rss_imports
    report["peak_reset_after_imports"] = reset
    print(json.dumps(report))


def check(reference: Path, others: list[Path]) -> dict:
    """Every table part of ``reference`` equals the same part in each of ``others`` (lineage
    columns aside: the naive baseline dates files differently), and no part is missing."""
    import polars as pl
    from polars.testing import assert_frame_equal

    lineage = ["source_sha256", "source_path", "received_at"]
    compared = 0
    for table in TABLES:
        names = sorted(p.name for p in (reference / table).glob("*.parquet"))
        for other in others:
            other_names = sorted(p.name for p in (other / table).glob("*.parquet"))
            if names != other_names:
                raise AssertionError(f"{table}: parts differ between {reference} and {other}")
        for name in names:
            expected = pl.read_parquet(reference / table / name).drop(lineage)
            for other in others:
                actual = pl.read_parquet(other / table / name).drop(lineage)
                assert_frame_equal(actual, expected, check_exact=True)
                compared += 1
    return {"parts_compared": compared}


def _child(args: list[str]) -> tuple[str, object]:
    """Run this module with ``args`` in a child; return its last stdout line and its rusage.

    Output goes to files (no pipe can fill up) so the child is reaped by ``os.wait4``, which
    returns that child's own rusage."""
    cmd = [sys.executable, "-m", "benchmarks.garmin_ingest_speed", *args]
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=root, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return stdout.strip().splitlines()[-1], usage


def run_method(method: str, landing: Path, out: Path) -> dict:
    """One subprocess per method; its peak RSS is its own rusage maxrss from wait4 (the child
    resets the mark after imports, so this is the peak while working, imports included)."""
    started = time.perf_counter()
    line, usage = _child(["--worker", method, "--landing", str(landing), "--data", str(out)])
    report = json.loads(line)
    report["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    report["process_wall_s"] = time.perf_counter() - started
    report["process_cpu_s"] = usage.ru_utime + usage.ru_stime  # imports included
    return report


def run_rounds(methods, landing: Path, data: Path, prefix: str, repeat: int) -> dict[str, dict]:
    """Run every method ``repeat`` times, round-robin (so slow phases of a shared machine hit
    every method alike), each run into an empty folder; report each method's fastest run
    (``all_seconds``/``all_cpu_s`` keep every run) and its highest peak memory of all runs."""
    runs: dict[str, list[dict]] = {method: [] for method in methods}
    for round_ in range(repeat):
        for method in methods:
            out = data / f"{prefix}_{method}"
            shutil.rmtree(out, ignore_errors=True)
            r = run_method(method, landing, out)
            runs[method].append(r)
            print(
                f"  {prefix} {round_ + 1}/{repeat} {method:<12}{r['seconds']:8.2f} s "
                f"cpu {r['cpu_s']:6.2f} s  peak {r['peak_rss_mb']:6.0f} MB",
                flush=True,
            )
    reports = {}
    for method, method_runs in runs.items():
        best = dict(min(method_runs, key=lambda r: r["seconds"]))
        highest = max(method_runs, key=lambda r: r["peak_rss_mb"] - r["rss_after_imports_mb"])
        best["peak_rss_mb"] = highest["peak_rss_mb"]
        best["rss_after_imports_mb"] = highest["rss_after_imports_mb"]
        best["all_seconds"] = [r["seconds"] for r in method_runs]
        best["all_cpu_s"] = [r["cpu_s"] for r in method_runs]
        reports[method] = best
    return reports


def _rates(report: dict, n_items: int, n_bytes: int, largest: int) -> None:
    report["items_per_s"] = n_items / report["seconds"]
    report["mb_per_s"] = n_bytes / MB / report["seconds"]
    report["extra_rss_mb"] = report["peak_rss_mb"] - report["rss_after_imports_mb"]
    report["peak_vs_largest_body"] = report["peak_rss_mb"] * MB / largest
    report["extra_vs_largest_body"] = report["extra_rss_mb"] * MB / largest


def _table(title: str, reports: dict, largest: int) -> list[str]:
    base = reports.get(BASELINE)
    lines = [
        "",
        title,
        f"{'method':<12}{'time s':>8}{'cpu s':>7}{'items/s':>9}{'MB/s':>7}{'× naive':>9}"
        f"{'× cpu':>7}{'peak MB':>9}{'Δ MB':>7}{'peak/body':>11}{'Δ/body':>8}",
    ]
    lines.append("-" * len(lines[-1]))
    for method, r in reports.items():
        ratio = base["seconds"] / r["seconds"] if base else None
        cpu_ratio = base["cpu_s"] / r["cpu_s"] if base else None
        r["speedup_vs_" + BASELINE] = ratio
        r["cpu_speedup_vs_" + BASELINE] = cpu_ratio
        r["memory_vs_" + BASELINE] = r["peak_rss_mb"] / base["peak_rss_mb"] if base else None
        lines.append(
            f"{method:<12}{r['seconds']:>8.2f}{r['cpu_s']:>7.1f}{r['items_per_s']:>9.1f}"
            f"{r['mb_per_s']:>7.1f}{(f'{ratio:.2f}' if ratio else '—'):>9}"
            f"{(f'{cpu_ratio:.2f}' if cpu_ratio else '—'):>7}{r['peak_rss_mb']:>9.0f}"
            f"{r['extra_rss_mb']:>7.0f}{r['peak_vs_largest_body']:>11.1f}"
            f"{r['extra_vs_largest_body']:>8.1f}"
        )
    lines.append(f"(largest body {largest / MB:.1f} MB)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=200, help="total push bytes (2**20)")
    parser.add_argument("--activity-items", type=int, default=8, help="items per body")
    parser.add_argument("--samples", type=int, default=3600, help="≈ samples per activity")
    parser.add_argument("--dailies-items", type=int, default=30, help="users' days per body")
    parser.add_argument("--dailies-share", type=float, default=0.25, help="of the bytes")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--large-mb", type=float, default=100, help="0: no large-body run")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--repeat", type=int, default=1, help="round-robin runs per method; fastest reported"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the output comparison")
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=sorted(METHOD_FUNCTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--landing", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--check", nargs="+", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.landing, args.data)
        return 0
    if args.generate:
        large = args.data / "large" / "garmin" / "push" / "large.json" if args.large_mb else None
        print(json.dumps(generate(args, args.landing, large)))
        return 0
    if args.check:
        print(json.dumps(check(args.check[0], args.check[1:])))
        return 0

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods: {sorted(unknown)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="garmin_ingest_speed_") as tmp:
        data = args.keep or Path(tmp)
        landing = data / "landing"
        t0 = time.perf_counter()
        generate_args = ["--generate", "--landing", str(landing), "--data", str(data)]
        for name in ("mb", "activity_items", "samples", "dailies_items", "dailies_share"):
            generate_args += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        generate_args += ["--users", str(args.users), "--large-mb", str(args.large_mb)]
        generate_args += ["--seed", str(args.seed)]
        line, _ = _child(generate_args)
        size = json.loads(line)
        size["generate_s"] = round(time.perf_counter() - t0, 1)
        largest = size["largest_body_bytes"]
        print(
            f"input: {size['bodies']} bodies, {size['bytes'] / MB:.1f} MB, {size['items']:,} "
            f"items — activityDetails {size['activity_bodies']} bodies × "
            f"{args.activity_items} items ({size['samples']:,} samples, {size['laps']:,} laps, "
            f"{size['activity_bytes'] / MB:.1f} MB); dailies {size['dailies_bodies']} bodies × "
            f"{args.dailies_items} items ({size['hr_samples']:,} HR samples, "
            f"{size['dailies_bytes'] / MB:.1f} MB); largest body {largest / MB:.1f} MB; "
            f"generated in {size['generate_s']} s",
            flush=True,
        )
        reports = run_rounds(methods, landing, data, "out", args.repeat)
        for r in reports.values():
            _rates(r, size["items"], size["bytes"], largest)
        checked = None
        writers = [m for m in methods if m in WRITERS]
        if not args.no_check and len(writers) > 1:
            outs = [data / f"out_{m}" / ("bronze" if m == "ingest" else "") for m in writers]
            line, _ = _child(["--check", *map(str, outs)])
            checked = json.loads(line)
            print(f"  outputs equal: {checked['parts_compared']} table parts compared", flush=True)

        large_reports = {}
        if args.large_mb:
            large_landing = data / "large"
            large_reports = run_rounds(LARGE_METHODS, large_landing, data, "large", args.repeat)
            for r in large_reports.values():
                _rates(
                    r, size["large_body_items"], size["large_body_bytes"], size["large_body_bytes"]
                )

    lines = _table(
        f"batch: {size['bytes'] / MB:.0f} MB in {size['bodies']} bodies", reports, largest
    )
    if "ingest" in reports:
        r = reports["ingest"]
        lines.append(
            f"ingest = register_landing {r['register_s']:.2f} s + ingest_push_files "
            f"{r['ingest_s']:.2f} s"
        )
    if large_reports:
        lines += _table(
            f"one large activityDetails body: {size['large_body_items']} items",
            large_reports,
            size["large_body_bytes"],
        )
    lines += [
        "",
        f"time: whole method, fastest of {args.repeat} round-robin run(s), each in its own "
        "process after imports; cpu s: its CPU time",
        "(all threads; less sensitive than time to other load on the machine); MB = 2**20 bytes.",
        "peak MB: the child's max RSS (wait4 rusage), mark reset after imports, highest of the",
        "runs; Δ MB: peak − RSS after imports; peak/body, Δ/body: those over the largest body.",
    ]
    print("\n".join(lines))
    elapsed = time.perf_counter() - started
    print(f"\n({elapsed:.1f} s) → {args.out}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "garmin_ingest_speed",
        "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {
            "mb": args.mb,
            "activity_items_per_body": args.activity_items,
            "samples_per_activity_target": args.samples,
            "dailies_items_per_body": args.dailies_items,
            "dailies_share": args.dailies_share,
            "users": args.users,
            "large_mb": args.large_mb,
            "seed": args.seed,
            "repeat": args.repeat,
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
        },
        "input": size,
        "baseline": BASELINE,
        "methods": reports,
        "outputs_equal": checked,
        "large_body": large_reports,
        "elapsed_s": round(elapsed, 2),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
