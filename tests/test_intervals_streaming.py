"""Interval metrics streamed over session-grouped Parquet equal the in-memory method."""

from __future__ import annotations

import polars as pl
import pytest
from test_intervals import assert_same_frames, randomized_sessions

from pipelines.intervals import clean_samples, interval_metrics
from pipelines.intervals.streaming import SessionsNotGrouped, interval_metrics_files

KEY = ["session_id", "kind", "interval_index"]


def write_parts(samples: pl.DataFrame, directory, cuts: list[int]) -> list:
    """The samples split into Parquet files at the given rows (sessions straddle files)."""
    paths = []
    for k, (a, b) in enumerate(zip([0, *cuts], [*cuts, samples.height], strict=True)):
        path = directory / f"part-{k}.parquet"
        samples.slice(a, b - a).write_parquet(path, row_group_size=50)
        paths.append(path)
    return paths


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("batch_rows", [1, 37, 1_000_000])
def test_streamed_equals_in_memory(tmp_path, seed, batch_rows):
    samples, laps = randomized_sessions(seed, n_sessions=8)
    # grouped by session (as silver samples are); times, duplicates left as delivered
    grouped = samples.sort("session_id", maintain_order=True)
    parts = write_parts(grouped, tmp_path, [grouped.height // 3, grouped.height // 2 + 5])
    out = tmp_path / "out" / "intervals.parquet"

    stats = interval_metrics_files(parts, laps.lazy(), out, batch_rows=batch_rows)

    want = interval_metrics(clean_samples(samples.lazy()), laps.lazy()).collect().sort(KEY)
    got = pl.read_parquet(out).sort(KEY)
    assert_same_frames(got, want)
    assert stats.intervals == laps.height  # the session without samples included
    assert stats.samples == samples.height
    assert stats.sessions == samples["session_id"].n_unique()
    if batch_rows == 1:  # a batch per session: memory bounded by the longest session
        assert stats.largest_batch == grouped.group_by("session_id").len()["len"].max()
    assert [p.name for p in out.parent.iterdir()] == ["intervals.parquet"]


def test_ungrouped_sessions_are_refused_and_nothing_is_written(tmp_path):
    samples, laps = randomized_sessions(3, n_sessions=4)
    grouped = samples.sort("session_id", maintain_order=True)
    first = grouped["session_id"][0]
    # the first session's first rows again at the end: not one run of rows
    ungrouped = pl.concat([grouped, grouped.filter(pl.col("session_id") == first).head(2)])
    parts = write_parts(ungrouped, tmp_path, [])
    out = tmp_path / "intervals.parquet"
    with pytest.raises(SessionsNotGrouped, match=rf"part-0\.parquet.*{first}"):
        interval_metrics_files(parts, laps, out, batch_rows=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-0.parquet"]


def test_files_with_other_columns_and_types_continue_each_other(tmp_path):
    """A session split across two files, the first without heart rate, the second with it
    as integers: read as one stream (every sample column Float64, null where absent)."""
    t = [0.0, 10.0, 20.0, 30.0, 40.0]
    first = pl.DataFrame({"session_id": "s", "t_s": t[:2], "distance_m": [0.0, 30.0]})
    second = pl.DataFrame(
        {"session_id": "s", "t_s": t[2:], "distance_m": [60.0, 90.0, 120.0], "hr_bpm": [150] * 3}
    )
    parts = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    first.write_parquet(parts[0])
    second.write_parquet(parts[1])
    laps = pl.DataFrame(
        {
            "session_id": ["s"],
            "kind": ["lap"],
            "interval_index": [0],
            "start_s": [0.0],
            "end_s": [40.0],
        }
    )
    out = tmp_path / "out.parquet"
    interval_metrics_files(parts, laps, out, batch_rows=2)
    row = pl.read_parquet(out).row(0, named=True)
    assert row["distance_m"] == pytest.approx(120.0)
    assert row["avg_hr"] == pytest.approx(150.0)  # over the 20 s that have heart rate
