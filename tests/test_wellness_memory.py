"""Silver wellness built chunk by chunk and day by day equals one build of everything."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from pipelines.activities.build import bronze
from pipelines.cli import run_pipeline
from pipelines.garmin import wellness
from pipelines.garmin.generate import daily, sleep, stress_details
from pipelines.garmin.lifecycle import permission_changes
from pipelines.lake.partitions import partition_files
from tests.conftest import land

DAY0 = 1_767_225_600  # 2026-01-01T00:00Z
DAY_S = 86_400
USERS = ("user-a", "user-b")


def silver(layout) -> dict[str, pl.DataFrame]:
    """Every partition file of the wellness tables, by table/file name."""
    return {
        f"{table}/{path.name}": pl.read_parquet(path)
        for table in wellness.SILVER_TABLES
        for path in partition_files(layout, table)
    }


def land_bodies(settings) -> None:
    rng = np.random.default_rng(7)
    days = range(DAY0, DAY0 + 9 * DAY_S, DAY_S)
    land(
        settings,
        "garmin/push/first.json",
        {
            "dailies": [daily(u, d, rng) for u in USERS for d in days],
            "stressDetails": [stress_details(u, d, rng) for u in USERS for d in days],
            # Tentative sleeps start before midnight; their final versions (below) after it.
            "sleeps": [sleep(u, d - 1800, rng, final=False) for u in USERS for d in days],
        },
    )
    finals = [
        sleep(u, d - 1800, rng) | {"startTimeInSeconds": d + 600} for u in USERS for d in days
    ]
    redelivered = daily(USERS[0], DAY0 + 4 * DAY_S, rng) | {"steps": 1}
    land(settings, "garmin/push/second.json", {"sleeps": finals, "dailies": [redelivered]})


def test_a_body_over_several_chunks_builds_the_one_chunk_silver(settings, layout, monkeypatch):
    land_bodies(settings)
    assert run_pipeline(settings, out=io.StringIO())
    one_chunk = silver(layout)
    assert any(name.startswith("garmin_timeseries/") for name in one_chunk)
    assert any(name.startswith("garmin_sleep_levels/") for name in one_chunk)

    monkeypatch.setattr(wellness, "FULL_CHUNK_DAYS", 2)
    report = wellness.refresh_silver_wellness(layout, force_full=True)
    chunked = silver(layout)

    assert sorted(chunked) == sorted(one_chunk)
    for name, frame in one_chunk.items():
        assert_frame_equal(chunked[name], frame, check_row_order=False)
    total = {
        t: sum(f.height for n, f in chunked.items() if n.startswith(f"{t}/")) for t in report.rows
    }
    assert report.rows == total

    # The children are those of the in-memory build of every chosen version.
    reference, _ = wellness.build_silver_wellness(
        lambda table: bronze(layout, table),
        permission_changes(bronze(layout, "garmin_permission_changes")),
    )
    for table in wellness.CHILD_TABLES:
        written = pl.concat([f for n, f in chunked.items() if n.startswith(f"{table}/")])
        assert_frame_equal(written, reference[table], check_row_order=False)
