"""An analyst and a dashboard in another process: read the warehouse and gold in a loop.

``python tests/reader_loop.py MODE WAREHOUSE GOLD_ROOT OUT STOP`` appends one JSON line per
read to OUT until the file STOP exists, or the error of a failed read. MODE ``fresh``: what a
new read-only connection sees each time, and gold's newest version; ``held``: what a connection
held open since the start sees (a process with an open connection to a file shares it with
every new connection to that path, so the two are separate processes).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import duckdb
import polars as pl

COUNTS = (
    "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM intervals), "
    "(SELECT count(*) FROM intervals ANTI JOIN sessions USING (session_id))"
)


def main(mode: str, warehouse: str, gold: str, out: str, stop: str) -> None:
    held = duckdb.connect(warehouse, read_only=True) if mode == "held" else None
    if held is not None:
        reads = (("held", lambda: list(held.execute(COUNTS).fetchall()[0])),)
    else:
        reads = (("fresh", lambda: _fresh(warehouse)), ("gold", lambda: _gold(gold)))
    with open(out, "a") as log:
        while not Path(stop).exists():
            for kind, read in reads:
                try:
                    log.write(json.dumps({"kind": kind, "seen": read()}) + "\n")
                except Exception as exc:  # every failure is the finding
                    log.write(json.dumps({"kind": kind, "error": f"{type(exc).__name__}: {exc}"}))
                    log.write("\n")
            log.flush()
            time.sleep(0.01)
    if held is not None:
        held.close()


def _fresh(warehouse: str) -> list[int]:
    with duckdb.connect(warehouse, read_only=True) as con:
        return list(con.execute(COUNTS).fetchall()[0])


def _gold(root: str) -> list[int]:
    return [
        pl.scan_delta(f"{root}/{table}").select(pl.len()).collect().item()
        for table in ("sessions", "intervals")
    ]


if __name__ == "__main__":
    main(*sys.argv[1:6])
