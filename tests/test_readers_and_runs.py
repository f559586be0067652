"""Analysts and scheduled runs side by side: an open connection never blocks a run, and no
reader sees half a run, in the warehouse or in gold."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl

from pipelines.cli import copy_sample_data, run_pipeline
from tests.conftest import land
from tests.test_lifecycle import T0, activity

READER = Path(__file__).with_name("reader_loop.py")


def activities(batch: int, count: int = 40) -> dict:
    """New runs of a batch's athletes, a day apart."""
    return {
        "activities": [
            activity(f"athlete-{n % 7}", 10_000 * batch + n, T0 + 86_400 * n, 1000.0 + n)
            for n in range(count)
        ]
    }


def published(settings) -> tuple[list[int], list[int]]:
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        counts = list(
            con.execute(
                "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM intervals), "
                "(SELECT count(*) FROM intervals ANTI JOIN sessions USING (session_id))"
            ).fetchall()[0]
        )
    gold = [
        pl.scan_delta(str(settings.lake / "gold" / t)).select(pl.len()).collect().item()
        for t in ("sessions", "intervals")
    ]
    return counts, gold


def test_readers_never_block_runs_and_never_see_half_a_run(settings, tmp_path):
    copy_sample_data(settings.landing)
    assert run_pipeline(settings, out=io.StringIO())
    states, gold_states = map(lambda s: [s], published(settings))
    out, stop = tmp_path / "reads.jsonl", tmp_path / "stop"
    readers = [
        subprocess.Popen(
            [sys.executable, "-W", "error::DeprecationWarning", str(READER), mode]
            + [str(p) for p in (settings.duckdb, settings.lake / "gold", out, stop)]
        )
        for mode in ("fresh", "fresh", "held")
    ]
    try:
        for batch in range(1, 5):
            payload = activities(batch)
            if batch == 3:  # a re-delivery of an earlier run, moved two days later
                moved = activity("athlete-1", 10_001, T0 + 3 * 86_400, 1001.0)
                payload["activities"].append(moved)
            land(settings, f"garmin/push/batch-{batch}/activities.json", payload)
            assert run_pipeline(settings, out=io.StringIO()), f"run of batch {batch} failed"
            counts, gold = published(settings)
            states.append(counts)
            gold_states.append(gold)
    finally:
        stop.touch()
        for reader in readers:
            reader.wait(timeout=60)

    reads = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r for r in reads if "error" in r] == []
    seen = {kind: [r["seen"] for r in reads if r["kind"] == kind] for kind in ("fresh", "held")}
    assert all(s in states for s in seen["fresh"]), "a reader saw half a run"
    assert len({tuple(s) for s in seen["fresh"]}) >= 2, "readers did not overlap the runs"
    assert all(s == states[0] for s in seen["held"]), "an open connection's view changed"
    assert all(r["seen"] in gold_states for r in reads if r["kind"] == "gold")
    assert all(orphans == 0 for _, _, orphans in states)
    assert states[-1][0] == states[0][0] + 4 * 40  # the moved re-delivery is one session
