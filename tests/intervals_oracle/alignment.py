"""Interval alignment: cumulative values interpolated at boundary instants, whole columns at once.

Samples (one stream per session, smart-recorded: irregular gaps) come in as
``session_id, t_s`` (epoch seconds, float) plus any of ``distance_m`` (cumulative),
``timer_s`` (cumulative, stops in pauses), ``elevation_m``, ``hr_bpm``, ``speed_mps``,
``cadence``, ``power_w``. Intervals come in as ``session_id, kind, interval_index, start_s,
end_s``. Every function works on all sessions together: no Python loop per session, lap or
sample.

Semantics (DESIGN.md, "The interval problem"):
- cumulative columns (distance, timer, elevation) are interpolated between the last valid
  sample at or before the instant and the first valid one at or after it: timer and elevation
  linearly in time; distance along a speed ramp placed where the device speeds at the two
  samples balance the gap's distance, linearly when they cannot (``speed_ramp_fraction``;
  interpolation error on thinned real FIT files median 0.006 % / p95 0.33 % of lap distance,
  straight line 0.017 % / 0.90 %: benchmarks/RESULTS-intervals.md);
- a session's first sample without distance reads 0 m when the first reading is within reach
  of the device's speeds (odometers start at zero; ``_zero_at_start``);
- instantaneous columns (heart rate, speed, cadence, power) hold their value until the next
  sample, so averages are time-weighted over the exact interval;
- an instant before the first or after the last sample takes the edge value and is flagged
  ``*_out_of_range``: nothing is extrapolated.

Execution: :func:`clean_samples` and :func:`interval_metrics` run on whole numpy columns
(``arrays.py``) inside the lazy query (``map_batches`` / ``pl.defer``): an O(n) check that
the samples are already in (session, time) order (silver samples are) instead of a sort;
each interval a row range found by a vectorized binary search; sums, maxima and counts over
whole sample-to-sample segments as range reductions, the two segments cut by the boundaries
computed per interval; blocks of whole sessions (``BLOCK_ROWS``) bound the working memory.
Inputs larger than memory: ``streaming.interval_metrics_files`` runs this over session-grouped
Parquet a batch of whole sessions at a time.
Outputs equal the previous Polars query's (a frozen copy: ``benchmarks/interval_speed.py``,
``previous_implementation``; tests/test_intervals.py compares them on randomized sessions).
Full method: 1.4–2.5× the time of bare numpy searchsorted + linear interpolation (36 M and
1–3 M samples), 15–35× faster than the Polars query; benchmarks/RESULTS-intervals.md. A NaN in a
sample column counts as missing (the Polars query told NaN from null; decoders give nulls).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import polars as pl

from . import arrays as A

CUMULATIVE = ("distance_m", "timer_s", "elevation_m")
HELD = ("hr_bpm", "speed_mps", "cadence", "power_w")
SAMPLE_COLUMNS = ("session_id", "t_s", *CUMULATIVE, *HELD)

TARGET_COLUMNS = ("target_type", "target_low", "target_high")

# Candidate lag of the device's lap totals behind its record stream (s): many devices close a
# lap with the odometer of the reading before the trigger, so their lap distance is the
# records' distance read this much before each boundary.
RECORD_LAG_S = 1.0
# The lag is used when it at least halves the session's total lap distance error against the
# device's own lap distances, over at least this many laps.
RECORD_LAG_MIN_LAPS = 2
RECORD_LAG_GAIN = 0.5

# A distance drop larger than this is a device reset, not GPS noise.
RESET_TOLERANCE_M = 1.0
# Width of the speed ramp between two samples, as a share of the widest that fits
# (speed_ramp_fraction): 0 = a step, 1 = the widest ramp.
RAMP_WIDTH_SHARE = 0.5
# Samples per block of whole sessions in interval_metrics (working memory ~ a few arrays of
# this length, whatever the input size).
BLOCK_ROWS = 1 << 19

INTERVAL_COLUMNS = [
    "session_id",
    "kind",
    "interval_index",
    "start_s",
    "end_s",
    "elapsed_s",
    "timer_s",
    "distance_m",
    "avg_speed_mps",
    "avg_pace_s_per_km",
    "avg_hr",
    "max_hr",
    "avg_cadence",
    "avg_power_w",
    "max_power_w",
    "elevation_gain_m",
    "elevation_loss_m",
    "start_interpolated",
    "end_interpolated",
    "start_out_of_range",
    "end_out_of_range",
    "max_gap_s",
    "gap_count",
    "pause_count",
    "paused_s",
    "n_samples",
]


def _ensure_columns(samples: pl.LazyFrame) -> pl.LazyFrame:
    present = samples.collect_schema().names()
    missing = [pl.lit(None, pl.Float64).alias(c) for c in SAMPLE_COLUMNS if c not in present]
    # Other columns (positions, …) ride along untouched.
    return samples.with_columns(missing).with_columns(
        [pl.col(c).cast(pl.Float64) for c in SAMPLE_COLUMNS[1:]]
    )


def clean_samples(
    samples: pl.LazyFrame, session_starts: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """Sorted, de-duplicated samples with distance resets undone and indoor distance filled.

    - out-of-order samples are sorted by (session, time); several samples at one instant are
      merged, each column keeping the last value delivered there. Input that is already in
      that order (each session one run of rows, time strictly increasing: checked in one
      pass) is not sorted again;
    - with ``session_starts`` (``session_id, start_s, end_s``): a session whose first sample
      comes after its start (and before its end; none without a known end) gets a sample at
      the start reading 0 m (and timer 0 s), when its first distance is within reach of the
      device's speeds since the start (``_start_samples``);
    - a session's first sample without distance reads 0 m on the same condition;
    - a cumulative distance that drops (device reset, new FIT section) is re-based so it keeps
      rising;
    - a session with no distance at all but speed gets distance by integrating the held speed.
    """
    ensured = _ensure_columns(samples)
    schema = ensured.collect_schema()
    if session_starts is None:
        return ensured.map_batches(_clean, schema=schema)
    origins = session_starts.select(
        pl.col("session_id").cast(pl.String),
        pl.col("start_s").cast(pl.Float64),
        pl.col("end_s").cast(pl.Float64),
    )

    def run() -> pl.DataFrame:
        return _clean(*pl.collect_all([ensured, origins]))

    return pl.defer(run, schema=schema)


def _clean(df: pl.DataFrame, origins: pl.DataFrame | None = None) -> pl.DataFrame:
    """:func:`clean_samples` on a collected frame (numpy, block by block)."""
    if df["t_s"].null_count():
        df = df.filter(pl.col("t_s").is_not_null())  # a copy only when there is one to drop
    starts, ordered = A.runs(df["session_id"], df["t_s"])
    if not ordered:
        df = _one_row_per_instant(df.sort("session_id", "t_s", maintain_order=True))
        starts, _ = A.runs(df["session_id"], df["t_s"])
    n = df.height
    if n == 0:
        return df
    if origins is not None and origins.height:
        df, starts = _start_samples(df, starts, origins)
        n = df.height
    if not (df["distance_m"].null_count() or df["distance_m"].is_nan().any()):
        # Every sample has a distance: only a drop (reset) would change anything.
        change = np.zeros(n, bool)
        change[starts] = True

        def no_reset(previous, current):
            return ~((current - previous) < -RESET_TOLERANCE_M)

        if A.steps_hold(df["distance_m"], change, no_reset):
            return df
        del change
    distance = np.empty(n)
    cuts = A.session_blocks(starts, n, BLOCK_ROWS)
    for r0, r1 in pairwise(cuts):
        block = df.slice(r0, r1 - r0)
        distance[r0:r1] = _clean_distance(
            block["t_s"].to_numpy(),
            block["distance_m"].to_numpy(),
            block["speed_mps"].to_numpy(),
            starts[(starts >= r0) & (starts < r1)] - r0,
        )
    return df.with_columns(pl.Series("distance_m", distance, nan_to_null=True))


def _one_row_per_instant(df: pl.DataFrame) -> pl.DataFrame:
    """Sorted samples with several rows at one instant merged into one: each column takes the
    last value delivered at that instant (a later null does not erase an earlier value). Some
    writers split one instant into several records (the Strava app: speed in one, distance in
    the next); keeping only the last row would drop the other fields."""
    same = pl.col("session_id").eq_missing(pl.col("session_id").shift(-1)) & (
        pl.col("t_s") == pl.col("t_s").shift(-1)
    )
    repeated = df.select(same.fill_null(False)).to_series()
    if not repeated.any():
        return df
    instant = pl.struct("session_id", "t_s")
    values = [c for c in df.columns if c not in ("session_id", "t_s")]
    floats = [c for c in values if df.schema[c].is_float()]
    return (
        df.with_columns(pl.col(floats).fill_nan(None))  # NaN counts as missing, as null
        .with_columns(pl.col(values).forward_fill().over(instant))
        .filter(~repeated)
    )


def _clean_distance(t, d, speed, starts) -> np.ndarray:
    """Distance of one block of whole sessions with resets re-based and, for sessions without
    any distance but with speed, the integrated held speed (NaN = null)."""
    n = len(t)
    run = np.zeros(n, np.int64)
    run[starts[1:]] = 1
    run = np.cumsum(run)
    first = starts[run]  # each row's session's first row
    valid = ~np.isnan(d)
    # The last valid distance before each row, within its session.
    last_valid = np.where(valid, np.arange(n), -1)
    np.maximum.accumulate(last_valid, out=last_valid)
    before = np.full(n, -1)
    before[1:] = last_valid[:-1]
    del last_valid
    previous = np.where(before >= first, d[np.maximum(before, 0)], np.nan)
    del before, first
    # After a reset the odometer counts from zero again: continue from the last reading.
    with np.errstate(invalid="ignore"):
        reset = (d - previous) < -RESET_TOLERANCE_M
    has_distance = np.add.reduceat(valid, starts) > 0
    has_speed = np.add.reduceat(~np.isnan(speed), starts) > 0
    rebased = d + _session_cumsum(np.where(reset, previous, 0.0), starts, run)
    distance = np.where(has_distance[run], rebased, np.nan)
    _zero_at_start(t, distance, speed, starts, run)
    indoor = ~has_distance & has_speed
    if indoor.any():
        step = np.zeros(n)
        step[1:] = speed[:-1] * (t[1:] - t[:-1])
        step[starts] = 0.0  # no previous sample in the session
        step[np.isnan(step)] = 0.0
        distance = np.where(indoor[run], _session_cumsum(step, starts, run), distance)
    return distance


def _zero_at_start(t, distance, speed, starts, run) -> None:
    """Odometers count from zero when a session starts: a session whose first sample has no
    distance reads 0 there (in place) if its first reading is within reach
    (:func:`_reachable_from`). Many devices' first record, and often the first activityDetails
    sample, carry no distance; holding the first reading back to the start would drop the
    distance covered before it from the first lap. A first reading too far for that (a stream
    that starts mid-activity) is left alone: nothing is invented."""
    missing = np.isnan(distance[starts])
    if missing.any():
        anchor = missing & _reachable_from(t[starts], t, distance, speed, starts, run)
        distance[starts[anchor]] = 0.0


def _reachable_from(origin, t, distance, speed, starts, run) -> np.ndarray:
    """Per session: its first distance reading is no further than the device's speeds could
    have carried it since ``origin`` (1.5 × the fastest speed up to that reading × the time,
    + 1 m), so the odometer can have read 0 at ``origin``. False without any reading."""
    n = len(t)
    first_valid = _first_valid(distance, starts)
    fv = np.minimum(first_valid, n - 1)
    until_first = np.where(np.arange(n) <= fv[run], speed, np.nan)
    fastest = np.nan_to_num(np.fmax.reduceat(until_first, starts), nan=0.0)
    reach = 1.5 * np.clip(fastest, 0.0, None) * (t[fv] - origin) + RESET_TOLERANCE_M
    with np.errstate(invalid="ignore"):
        return (first_valid < n) & (distance[fv] >= 0.0) & (distance[fv] <= reach)


def _first_valid(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per session (first rows ``starts``): the row of its first non-NaN value, ``len(values)``
    when it has none."""
    n = len(values)
    return np.minimum.reduceat(np.where(np.isnan(values), n, np.arange(n)), starts)


def _start_samples(
    df: pl.DataFrame, starts: np.ndarray, origins: pl.DataFrame
) -> tuple[pl.DataFrame, np.ndarray]:
    """Sorted samples with a sample inserted at each session's start (``origins``) where the
    first sample comes later (but before the session's end: a stream that does not belong to
    the session's time is left alone) and the odometer can have read 0 at the start
    (:func:`_reachable_from`): distance 0, timer 0 where the first timer reading allows it,
    the other measured values missing (ride-along columns such as ids copied from the first
    sample). A pool swim records only at the end of each length, a watch often only after GPS
    lock: without it the first lap would start at the first reading and lose what came before.
    Returns the frame and its new session starts."""
    n = df.height
    first_ids = df["session_id"].gather(starts).cast(pl.String)
    spans = pl.DataFrame({"session_id": first_ids}).join(
        origins.unique("session_id", keep="first"),
        on="session_id",
        how="left",
        maintain_order="left",
    )
    origin = spans["start_s"].fill_null(np.nan).to_numpy()
    end = spans["end_s"].fill_null(np.nan).to_numpy()
    t = df["t_s"].to_numpy()
    with np.errstate(invalid="ignore"):
        later = (origin < t[starts]) & (t[starts] <= end)
    if not later.any():
        return df, starts
    run = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, n)))
    d = df["distance_m"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    speed = df["speed_mps"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    anchor = later & _reachable_from(origin, t, d, speed, starts, run)
    if not anchor.any():
        return df, starts
    at = starts[anchor]  # each anchored session's first row: the new sample goes before it
    rows = np.insert(np.arange(n), at, at)
    new = at + np.arange(len(at))
    is_new = np.zeros(len(rows), bool)
    is_new[new] = True
    # Timer 0 at the start unless the first timer reading says the timer ran before it.
    timer = df["timer_s"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    first_timer = _first_valid(timer, starts)
    ft = np.minimum(first_timer, n - 1)
    with np.errstate(invalid="ignore"):
        timer_ok = (first_timer < n) & (timer[ft] <= t[ft] - origin + 1.0)
    start_values = {
        "t_s": origin[anchor],
        "distance_m": np.zeros(len(at)),
        "timer_s": np.where(timer_ok[anchor], 0.0, np.nan),
    }
    mask = pl.Series(is_new)
    measured = [c for c in (*SAMPLE_COLUMNS[2:], "lat_deg", "lon_deg") if c in df.columns]
    out = df[rows]
    columns = []
    for name in [*measured, "t_s"]:
        if name in start_values:
            values = out[name].cast(pl.Float64).to_numpy().copy()
            values[new] = start_values[name]
            columns.append(pl.Series(name, values, nan_to_null=True))
        else:
            columns.append(pl.when(~mask).then(out[name]).otherwise(None).alias(name))
    out = out.with_columns(columns)
    return out, starts + np.concatenate([[0], np.cumsum(anchor)[:-1]])


def _session_cumsum(values: np.ndarray, starts: np.ndarray, run: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each session (as ``grouped.cumsum``)."""
    total = np.cumsum(values)
    return total - (total[starts] - values[starts])[run]


def speed_ramp_fraction(
    f: pl.Expr, v0: pl.Expr, v1: pl.Expr, secant: pl.Expr, width_share: float = RAMP_WIDTH_SHARE
) -> pl.Expr:
    """Share of a gap's distance covered after fraction ``f`` of its time.

    The device's speeds at the two samples (``v0``, ``v1``) are the speed levels before and
    after the gap; the gap's own distance / time (``secant``) says *when* the speed changed:
    speed v0 until fraction τ and v1 after it covers the gap exactly when
    τ = (secant − v1) / (v0 − v1). The change is modelled as a linear speed ramp centred on τ
    (a symmetric ramp covers the same distance as a step at its centre), as wide as
    ``width_share`` × the widest ramp that fits in the gap (2·min(τ, 1 − τ)): 0 is a step, 1 the
    widest ramp (with τ = ½ the straight speed ramp from v0 to v1). Between the samples the
    estimate never decreases and it hits both samples exactly.

    When the speeds cannot explain the gap (the secant is not between v0 and v1: GPS distance
    noise, a speed sensor that disagrees with GPS, a surge inside the gap; or a speed is
    missing, or v0 = v1) nothing is known about the shape and the straight line is kept.

    Measured (benchmarks/interval_accuracy.py, RESULTS-intervals.md): at lap boundaries of
    thinned real runs and rides this cuts the straight line's 95th-percentile lap error by
    more than half; over every dropped 1 s record it beats the straight line and the previous
    speed-rescaled quadratic. A width share of ½ is the compromise between lap boundaries
    (often abrupt pace changes: a step does well) and arbitrary instants (gradual changes:
    the widest ramp does best)."""
    tau = (secant - v1) / (v0 - v1)
    explains = (v0 != v1) & (secant > 0) & tau.is_between(0.0, 1.0)
    width = width_share * 2 * pl.min_horizontal(tau, 1 - tau)
    ramp_start = tau - width / 2
    into_ramp = pl.min_horizontal((f - ramp_start).clip(lower_bound=0.0), width)
    ramp = pl.when(width > 0).then((v1 - v0) * into_ramp * into_ramp / (2 * width)).otherwise(0.0)
    covered = (
        v0 * pl.min_horizontal(f, ramp_start)
        + v0 * into_ramp
        + ramp
        + v1 * (f - ramp_start - width).clip(lower_bound=0.0)
    )
    return pl.when(explains).then(covered / secant).otherwise(f)


def speed_ramp_fraction_np(
    f: np.ndarray,
    v0: np.ndarray,
    v1: np.ndarray,
    secant: np.ndarray,
    width_share: float = RAMP_WIDTH_SHARE,
) -> np.ndarray:
    """:func:`speed_ramp_fraction` on numpy arrays (NaN = null): the same operations in the
    same order, so the same floats (tests/test_intervals.py checks it)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = (secant - v1) / (v0 - v1)
        explains = (v0 != v1) & (secant > 0) & (tau >= 0.0) & (tau <= 1.0)
        out = f.copy()
        if not explains.any():
            return out
        f, v0, v1, secant, tau = (x[explains] for x in (f, v0, v1, secant, tau))
        width = width_share * 2 * np.minimum(tau, 1 - tau)
        ramp_start = tau - width / 2
        into_ramp = np.minimum(np.maximum(f - ramp_start, 0.0), width)
        ramp = np.where(width > 0, (v1 - v0) * into_ramp * into_ramp / (2 * width), 0.0)
        covered = (
            v0 * np.minimum(f, ramp_start)
            + v0 * into_ramp
            + ramp
            + v1 * np.maximum(f - ramp_start - width, 0.0)
        )
        out[explains] = covered / secant
    return out


def interpolated_values_np(x: np.ndarray, frame: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CUMULATIVE values at instants ``x`` from each column's valid neighbours (``{c}__lo_t``,
    ``{c}__lo``, ``{c}__hi_t``, ``{c}__hi``; ``distance_m__lo_v`` and ``distance_m__hi_v`` the
    device speeds there; NaN = null): timer and elevation linear in time, distance along the
    speed ramp; the edge value where one side is missing. The operations of the previous
    Polars expressions (benchmarks/interval_speed.py, ``previous_implementation``)."""
    values = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for c in CUMULATIVE:
            lo_t, lo, hi_t, hi = (frame[f"{c}__{k}"] for k in ("lo_t", "lo", "hi_t", "hi"))
            fraction = (x - lo_t) / (hi_t - lo_t)
            if c == "distance_m":
                fraction = speed_ramp_fraction_np(
                    fraction,
                    frame["distance_m__lo_v"],
                    frame["distance_m__hi_v"],
                    (hi - lo) / (hi_t - lo_t),
                )
            inside = lo + (hi - lo) * fraction
            edge = np.isnan(hi) | (hi_t == lo_t)
            values[c] = np.where(np.isnan(lo), hi, np.where(edge, lo, inside))
    return values


def interpolate_at(samples: pl.LazyFrame, instants: pl.LazyFrame) -> pl.LazyFrame:
    """Values of the sample stream at arbitrary instants (``session_id, t_s``; extra columns
    ride along, rows stay in the instants' order). Adds ``prev_t`` and ``next_t`` (the samples
    at or before / at or after the instant), the CUMULATIVE and HELD columns, ``interpolated``
    (no sample exactly there), ``out_of_range`` (before the first or after the last sample)
    and ``bracket_gap_s`` (time between the samples around the instant)."""
    schema = dict(instants.collect_schema())
    schema |= {c: pl.Float64 for c in ("prev_t", "next_t", *CUMULATIVE, *HELD)}
    schema |= {"interpolated": pl.Boolean, "out_of_range": pl.Boolean, "bracket_gap_s": pl.Float64}
    rows = _ensure_columns(samples).select(SAMPLE_COLUMNS)

    def run() -> pl.DataFrame:
        sample_df, points = pl.collect_all([rows, instants])
        x = points["t_s"].cast(pl.Float64).to_numpy()
        sample_df, starts, lo, hi = _sessions(sample_df, points["session_id"])

        def block(frame, t, _starts, chosen, r0):
            cols = A.Columns(frame, (*CUMULATIVE, *HELD))
            loc, requests = _locate(t, cols, x[chosen], lo[chosen] - r0, hi[chosen] - r0)
            at = _interpolate(x[chosen], loc, cols.lookup(requests))
            return {
                "prev_t": loc["prev_t"],
                "next_t": loc["next_t"],
                **{c: at[c] for c in (*CUMULATIVE, *HELD)},
                "interpolated": ~at["exact"],
                "out_of_range": at["out_of_range"],
                "bracket_gap_s": at["bracket_gap_s"],
            }

        values = _blockwise(sample_df, starts, lo, block)
        return points.with_columns(
            pl.Series(name, v, nan_to_null=v.dtype == np.float64) for name, v in values.items()
        )

    return pl.defer(run, schema=schema)


def interval_metrics(
    samples: pl.LazyFrame,
    intervals: pl.LazyFrame,
    gap_threshold_s: float = 10.0,
) -> pl.LazyFrame:
    """Per interval: exact-boundary distance/timer/elapsed, time-weighted averages, quality.

    ``samples`` should come from :func:`clean_samples` (sorted, one row per instant; other
    orders are sorted here first). Intervals of one ``kind`` must not overlap within a
    session (laps, workout steps); different kinds may.

    How (``arrays.py``): the rows of an interval [start, end) are the boundary instant
    ``start`` (values interpolated there, the held values of the sample at or before it), the
    samples inside (one exactly at ``start`` included), and each row's segment runs to the
    next row (the next sample, or ``end``). Whole segments between two samples are summed by
    range reductions over per-sample arrays; only the two segments cut by the boundaries are
    computed per interval; a pause is counted where a run of paused segments starts. Nothing
    is sorted when the samples already are (checked in one pass). Runs at ``collect`` time.
    """
    names = set(intervals.collect_schema().names())
    has_targets = set(TARGET_COLUMNS) <= names
    has_device = "device_distance_m" in names
    spans = intervals.select(
        "session_id",
        "kind",
        "interval_index",
        pl.col("start_s").cast(pl.Float64),
        pl.col("end_s").cast(pl.Float64),
        *([pl.col(c) for c in TARGET_COLUMNS] if has_targets else []),
        *([pl.col("device_distance_m").cast(pl.Float64)] if has_device else []),
    )
    rows = _ensure_columns(samples).select(SAMPLE_COLUMNS)
    span_schema = spans.collect_schema()
    schema = {c: pl.Float64 for c in INTERVAL_COLUMNS} | {
        "session_id": span_schema["session_id"],
        "kind": span_schema["kind"],
        "interval_index": span_schema["interval_index"],
        "start_interpolated": pl.Boolean,
        "end_interpolated": pl.Boolean,
        "start_out_of_range": pl.Boolean,
        "end_out_of_range": pl.Boolean,
        "gap_count": pl.UInt32,
        "pause_count": pl.UInt32,
        "n_samples": pl.UInt32,
    }
    if has_targets:
        schema["time_in_target_s"] = pl.Float64

    def run() -> pl.DataFrame:
        sample_df, span_df = pl.collect_all([rows, spans])
        return _measure(sample_df, span_df, gap_threshold_s, has_targets, has_device)

    return pl.defer(run, schema=schema)


def _locate(t, cols: A.Columns, x, lo, hi) -> tuple[dict, list]:
    """Where instants ``x`` fall among their sessions' samples (rows [lo, hi) each): the
    sample at or before (``p``), at or after (``i``), each CUMULATIVE column's valid neighbours,
    the device speeds for the speed ramp; and the column values to look up for them."""
    i = A.search_left(t, x, lo, hi)
    known = ~np.isnan(x)
    q_ok = (i < hi) & known
    exact = q_ok & (A.gather(t, i, q_ok) == x)
    p = np.where(exact, i, i - 1)
    p_ok = (p >= lo) & known
    loc = {
        "i": i,
        "p": p,
        "p_ok": p_ok,
        "q_ok": q_ok,
        "exact": exact,
        "prev_t": A.gather(t, p, p_ok),
        "next_t": A.gather(t, i, q_ok),
    }
    requests = [((c, "held"), c, p, p_ok) for c in HELD]
    for c in CUMULATIVE:
        valid = cols.valid(c)  # None: no nulls, the neighbours are the samples around x
        lo_i, lo_ok = A.valid_before(valid, p, p_ok, lo)
        hi_i, hi_ok = A.valid_after(valid, i, q_ok, hi)
        del valid
        loc[f"{c}__lo_t"] = A.gather(t, lo_i, lo_ok)
        loc[f"{c}__hi_t"] = A.gather(t, hi_i, hi_ok)
        requests += [((c, "lo"), c, lo_i, lo_ok), ((c, "hi"), c, hi_i, hi_ok)]
    # Device speed where distance is valid: the slopes for the speed ramp.
    valid = None
    if cols.nulls["distance_m"] or cols.nulls["speed_mps"]:
        valid = cols.frame["distance_m"].is_not_null() & cols.frame["speed_mps"].is_not_null()
        valid = valid.to_numpy()
    lo_i, lo_ok = A.valid_before(valid, p, p_ok, lo)
    hi_i, hi_ok = A.valid_after(valid, i, q_ok, hi)
    requests += [(("speed", "lo"), "speed_mps", lo_i, lo_ok)]
    requests += [(("speed", "hi"), "speed_mps", hi_i, hi_ok)]
    return loc, requests


def _interpolate(x, loc: dict, got: dict) -> dict:
    """Interpolated CUMULATIVE values, held HELD values and flags at the located instants:
    what :func:`interpolate_at` gives, by the same operations (:func:`interpolated_values_np`)."""
    frame = {}
    for c in CUMULATIVE:
        frame[f"{c}__lo_t"], frame[f"{c}__lo"] = loc[f"{c}__lo_t"], got[c, "lo"]
        frame[f"{c}__hi_t"], frame[f"{c}__hi"] = loc[f"{c}__hi_t"], got[c, "hi"]
    frame["distance_m__lo_v"] = A.clip0(got["speed", "lo"])
    frame["distance_m__hi_v"] = A.clip0(got["speed", "hi"])
    at = interpolated_values_np(x, frame)
    at |= {c: got[c, "held"] for c in HELD}
    at |= {
        "i": loc["i"],
        "p": loc["p"],
        "p_ok": loc["p_ok"],
        "exact": loc["exact"],
        "out_of_range": ~(loc["p_ok"] & loc["q_ok"]),
        "bracket_gap_s": loc["next_t"] - loc["prev_t"],
    }
    return at


def _sessions(samples: pl.DataFrame, session_id: pl.Series):
    """Samples in (session, time) order (sorted only when they are not already), each
    session's first row, and for each query's ``session_id`` its session's rows [lo, hi)
    (empty for a session without samples)."""
    if samples["t_s"].null_count() or samples["session_id"].null_count():
        samples = samples.filter(pl.col("t_s").is_not_null() & pl.col("session_id").is_not_null())
    starts, ordered = A.runs(samples["session_id"], samples["t_s"])
    if not ordered:
        samples = samples.sort("session_id", "t_s", maintain_order=True)
        starts, _ = A.runs(samples["session_id"], samples["t_s"])
    n = samples.height
    run_table = pl.DataFrame(
        {
            "_sid": samples["session_id"].gather(starts).cast(pl.String),
            "_lo": starts,
            "_hi": np.append(starts[1:], n).astype(np.int64)[: len(starts)],
        }
    )
    located = pl.DataFrame({"_sid": session_id.cast(pl.String)}).join(
        run_table, on="_sid", how="left", maintain_order="left"
    )
    lo = located["_lo"].fill_null(0).to_numpy()
    hi = located["_hi"].fill_null(0).to_numpy()
    return samples, starts, lo, hi


def _blockwise(samples: pl.DataFrame, starts, lo, compute) -> dict[str, np.ndarray]:
    """``compute(rows, t, starts, chosen, r0)`` over blocks of whole sessions (~BLOCK_ROWS
    samples: the per-sample arrays are a block long, so the working memory does not grow with
    the input) for the queries ``chosen`` whose session is in the block (rows from ``r0``);
    the per-query results put together in query order."""
    n = samples.height
    m = len(lo)
    cuts = A.session_blocks(starts, n, BLOCK_ROWS)
    block = np.searchsorted(cuts[:-1], lo, "right") - 1
    order = np.argsort(block, kind="stable")
    bounds = np.searchsorted(block[order], np.arange(len(cuts)))
    if m == 0:  # the names and types of the results, from an empty block
        return compute(samples.head(0), np.zeros(0), starts[:0], order, 0)
    results: dict[str, np.ndarray] = {}
    for j in range(len(cuts) - 1):
        r0, r1 = int(cuts[j]), int(cuts[j + 1])
        chosen = order[bounds[j] : bounds[j + 1]]
        if not len(chosen):
            continue
        rows = samples.slice(r0, r1 - r0)
        block_starts = starts[(starts >= r0) & (starts < r1)] - r0
        part = compute(rows, rows["t_s"].to_numpy(), block_starts, chosen, r0)
        for key, values in part.items():
            if key not in results:
                results[key] = np.zeros(m, values.dtype)
            results[key][chosen] = values
    return results


def _measure(
    samples: pl.DataFrame,
    spans: pl.DataFrame,
    gap_threshold_s: float,
    has_targets: bool,
    has_device: bool = False,
) -> pl.DataFrame:
    """:func:`interval_metrics` on collected frames (``samples`` with SAMPLE_COLUMNS)."""
    samples, starts, lo, hi = _sessions(samples, spans["session_id"])
    a = spans["start_s"].to_numpy()
    b = spans["end_s"].to_numpy()
    targets = None
    if has_targets:
        targets = (
            spans["target_type"].cast(pl.String).to_numpy(),
            spans["target_low"].cast(pl.Float64).to_numpy(),
            spans["target_high"].cast(pl.Float64).to_numpy(),
        )

    def block(rows, t, block_starts, chosen, r0):
        return _block(
            t,
            A.Columns(rows, (*CUMULATIVE, *HELD)),
            block_starts,
            a[chosen],
            b[chosen],
            lo[chosen] - r0,
            hi[chosen] - r0,
            gap_threshold_s,
            None if targets is None else tuple(x[chosen] for x in targets),
        )

    results = _blockwise(samples, starts, lo, block)
    at_a = {c: results[f"start_{c}"] for c in CUMULATIVE}
    at_b = {c: results[f"end_{c}"] for c in CUMULATIVE}
    if has_device and len(a):
        at_a["distance_m"], at_b["distance_m"] = _lagged_distance(
            samples, starts, lo, hi, spans, at_a["distance_m"], at_b["distance_m"]
        )
    flags = ("start_interpolated", "end_interpolated", "start_out_of_range", "end_out_of_range")
    stats = {
        k: v for k, v in results.items() if k not in flags and not k.startswith(("start_", "end_"))
    }

    def column(name, values, dtype=pl.Float64):
        return pl.Series(name, values, nan_to_null=dtype == pl.Float64).cast(dtype)

    out = spans.select("session_id", "kind", "interval_index", "start_s", "end_s").with_columns(
        *[column(f"start_{c}", at_a[c]) for c in CUMULATIVE],
        *[column(f"end_{c}", at_b[c]) for c in CUMULATIVE],
        *[column(name, results[name], pl.Boolean) for name in flags],
        *[
            column(
                name,
                v,
                pl.UInt32 if name in ("gap_count", "pause_count", "n_samples") else pl.Float64,
            )
            for name, v in stats.items()
        ],
    )
    elapsed = pl.col("end_s") - pl.col("start_s")
    timer_expr = pl.col("end_timer_s") - pl.col("start_timer_s")
    distance = pl.col("end_distance_m") - pl.col("start_distance_m")
    return (
        out.with_columns(
            elapsed.alias("elapsed_s"),
            pl.coalesce(timer_expr, elapsed).alias("timer_s"),
            distance.alias("distance_m"),
        )
        .with_columns(
            pl.when(pl.col("timer_s") > 0)
            .then(pl.col("distance_m") / pl.col("timer_s"))
            .alias("avg_speed_mps"),
        )
        .with_columns(
            pl.when(pl.col("avg_speed_mps") > 0)
            .then(1000.0 / pl.col("avg_speed_mps"))
            .alias("avg_pace_s_per_km"),
        )
        .select(INTERVAL_COLUMNS + (["time_in_target_s"] if has_targets else []))
        .sort("session_id", "kind", "interval_index")
    )


def _distance_at(samples: pl.DataFrame, starts, lo, hi, x: np.ndarray) -> np.ndarray:
    """Interpolated distance at instants ``x`` (one per query of ``lo``/``hi``)."""

    def block(frame, t, _starts, chosen, r0):
        cols = A.Columns(frame, (*CUMULATIVE, *HELD))
        loc, requests = _locate(t, cols, x[chosen], lo[chosen] - r0, hi[chosen] - r0)
        return {"d": _interpolate(x[chosen], loc, cols.lookup(requests))["distance_m"]}

    return _blockwise(samples, starts, lo, block)["d"]


def _lagged_distance(samples, starts, lo, hi, spans, d_a, d_b):
    """Boundary distances with each session's lap-total lag applied: a session whose records
    reproduce the device's own interval distances (``device_distance_m``) clearly better when
    read ``RECORD_LAG_S`` before each boundary (the device closed its laps with the previous
    reading) takes its distances there, for all its intervals. Decided per session over its
    intervals with a device distance and both boundaries inside the samples (at least
    RECORD_LAG_MIN_LAPS, the total error at most RECORD_LAG_GAIN of the unlagged); other
    sessions keep the distances at the boundaries."""
    a = spans["start_s"].to_numpy()
    b = spans["end_s"].to_numpy()
    device = spans["device_distance_m"].fill_null(np.nan).to_numpy()
    both = np.concatenate([lo, lo]), np.concatenate([hi, hi])
    lagged = _distance_at(samples, starts, *both, np.concatenate([a, b]) - RECORD_LAG_S)
    m = len(a)
    l_a, l_b = lagged[:m], lagged[m:]
    t = samples["t_s"].to_numpy()
    first = A.gather(t, lo, hi > lo)
    last = A.gather(t, hi - 1, hi > lo)
    with np.errstate(invalid="ignore"):
        inside = (a >= first) & (b <= last) & (device > 0)
        now = np.abs(d_b - d_a - device)
        then = np.abs(l_b - l_a - device)
    usable = inside & np.isfinite(now) & np.isfinite(then)
    _, session = np.unique(spans["session_id"].cast(pl.String).to_numpy(), return_inverse=True)
    count = np.bincount(session, weights=usable)
    error_now = np.bincount(session, weights=np.where(usable, now, 0.0))
    error_then = np.bincount(session, weights=np.where(usable, then, 0.0))
    lag = (count >= RECORD_LAG_MIN_LAPS) & (error_then <= RECORD_LAG_GAIN * error_now)
    lag = lag[session] & np.isfinite(l_a) & np.isfinite(l_b)
    return np.where(lag, l_a, d_a), np.where(lag, l_b, d_b)


def _block(t, cols: A.Columns, starts, a, b, lo, hi, gap_threshold_s, targets) -> dict:
    """Boundary values, flags and statistics of intervals [a, b) over one block of samples
    (whole sessions; ``starts`` their first rows, [lo, hi) each interval's session rows)."""
    n = len(t)
    m = len(a)
    nulls = cols.nulls
    x = np.concatenate([a, b])
    loc, requests = _locate(t, cols, x, np.concatenate([lo, lo]), np.concatenate([hi, hi]))

    # Rows of [a, b): [the sample at a], the boundary a, the samples in (a, b). The boundary's
    # segment runs to the first sample after a (or to b); the last sample's to b; the samples
    # between, sample to sample ("full" segments, summed by range reductions).
    ia, ib = loc["i"][:m], loc["i"][m:]
    exact_a, exact_b = loc["exact"][:m], loc["exact"][m:]
    has_rows = a < b
    i0 = ia + exact_a
    n_inner = np.where(has_rows, ib - i0, 0)
    inner = n_inner > 0
    k = ib - 1  # the last sample inside, where inner
    full_s = i0
    full_e = np.where(n_inner >= 2, ib - 1, i0)
    requests += [((c, "at_end"), c, ib, exact_b) for c in CUMULATIVE]
    requests += [((c, "first"), c, i0, inner) for c in CUMULATIVE]
    requests += [((c, "last"), c, k, inner) for c in (*CUMULATIVE, *HELD)]
    got = cols.lookup(requests)  # each column converted once
    both = _interpolate(x, loc, got)
    at_a = {key: v[:m] for key, v in both.items()}
    at_b = {key: v[m:] for key, v in both.items()}
    del both, loc

    # Values where the last row's segment ends (at b): the sample there, else interpolated.
    end_values = {c: np.where(exact_b, got[c, "at_end"], at_b[c]) for c in CUMULATIVE}
    x1 = np.where(inner, A.gather(t, i0, inner), b)
    dt_start = x1 - a
    start_next = {c: np.where(inner, got[c, "first"], end_values[c]) for c in CUMULATIVE}
    dt_end = np.where(inner, b - A.gather(t, k, inner), 0.0)
    end_from = {c: got[c, "last"] for c in (*CUMULATIVE, *HELD)}

    def nan0(x):
        return np.where(np.isnan(x), 0.0, x)

    stats: dict[str, np.ndarray] = {}
    none = np.full(m, np.nan)
    dt = A.next_minus(t)
    if len(starts) > 1:
        dt[starts[1:] - 1] = np.nan  # no segment across sessions (never inside a full range)
    full_dt = A.range_sum(dt, full_s, full_e)

    # Time-weighted averages of held values; maxima over the held values in the interval.
    first_held = np.where(at_a["p_ok"], at_a["p"], ia)
    maxima = {"hr_bpm": "max_hr", "power_w": "max_power_w"}
    for c, name in (("hr_bpm", "avg_hr"), ("cadence", "avg_cadence"), ("power_w", "avg_power_w")):
        if nulls[c] == n:
            stats[name] = none
            if c in maxima:
                stats[maxima[c]] = none
            continue
        v = cols.array(c)
        if c in maxima:
            stats[maxima[c]] = np.where(has_rows, A.range_max(v, first_held, ib), np.nan)
        product = v * dt
        if nulls[c]:
            missing = np.isnan(v)
            product[missing] = 0.0
            den = A.range_sum(np.where(missing, 0.0, dt), full_s, full_e)
            del missing
        else:
            den = full_dt
        num = A.range_sum(product, full_s, full_e)
        del product, v
        held = at_a[c]
        last = end_from[c]
        num = num + nan0(held * dt_start) + np.where(inner, nan0(last * dt_end), 0.0)
        den = (
            den
            + np.where(np.isnan(held), 0.0, dt_start)
            + np.where(inner & ~np.isnan(last), dt_end, 0.0)
        )
        stats[name] = np.where(has_rows & (den > 0), num / np.where(den > 0, den, 1.0), np.nan)

    # Elevation: positive and negative steps between consecutive rows (a missing value on either
    # side: no step).
    e_start = start_next["elevation_m"] - at_a["elevation_m"]
    e_end = np.where(inner, end_values["elevation_m"] - end_from["elevation_m"], np.nan)
    if nulls["elevation_m"] == n:
        full_gain = full_loss = np.zeros(m)
    else:
        step = A.next_minus(cols.array("elevation_m"))
        full_gain = A.range_sum(np.fmax(step, 0.0), full_s, full_e)
        np.negative(step, out=step)
        full_loss = A.range_sum(np.fmax(step, 0.0), full_s, full_e)
        del step
    gain = full_gain + np.fmax(e_start, 0.0) + np.fmax(e_end, 0.0)
    loss = full_loss + np.fmax(-e_start, 0.0) + np.fmax(-e_end, 0.0)
    stats["elevation_gain_m"] = np.where(has_rows, gain, np.nan)
    stats["elevation_loss_m"] = np.where(has_rows, loss, np.nan)

    # Gaps: the bracket around the start boundary and each sample's gap to the next sample.
    gap_max = A.range_max(dt, ia, ib)
    stats["max_gap_s"] = np.where(has_rows, np.fmax(at_a["bracket_gap_s"], gap_max), np.nan)
    gap_count = A.range_count(dt > gap_threshold_s, ia, ib)
    stats["gap_count"] = np.where(has_rows, gap_count, 0)
    stats["n_samples"] = np.where(has_rows, ib - ia, 0)

    # Pauses: time the timer stood still; a pause is a run of segments where it (mostly) did.
    paused = A.next_minus(cols.array("timer_s"))
    np.subtract(dt, paused, out=paused)
    paused = A.clip0(paused)
    paused_start = A.clip0(dt_start - (start_next["timer_s"] - at_a["timer_s"]))
    paused_end = A.clip0(dt_end - (end_values["timer_s"] - end_from["timer_s"]))
    full_paused = A.range_sum(
        nan0(paused) if nulls["timer_s"] else paused, full_s, full_e
    )  # NaN only at session ends otherwise, never inside a full range
    stats["paused_s"] = np.where(
        has_rows, full_paused + nan0(paused_start) + np.where(inner, nan0(paused_end), 0.0), np.nan
    )
    p_true, p_false = A.pause_flags(dt, paused)
    run_start = np.zeros(n, bool)
    np.logical_and(p_true[1:], p_false[:-1], out=run_start[1:])
    a_true, a_false = A.pause_flags(dt_start, paused_start)
    q_true, _ = A.pause_flags(dt_end, paused_end)
    one = n_inner == 1
    many = n_inner >= 2
    first_true = many & p_true[np.clip(i0, 0, max(n - 1, 0))] if n else many
    before_last_false = many & p_false[np.clip(ib - 2, 0, max(n - 1, 0))] if n else many
    middle = A.range_count(run_start, i0 + 1, np.where(many, ib - 1, i0 + 1))
    stats["pause_count"] = (
        (a_true & has_rows).astype(np.int64)
        + (one & q_true & a_false)
        + np.where(many, (first_true & a_false) + middle + (q_true & before_last_false), 0)
    )
    del run_start, p_true, p_false

    if targets is not None:
        first_piece = CutSegment(
            dt_start,
            paused_start,
            at_a["speed_mps"],
            at_a["hr_bpm"],
            start_next["distance_m"] - at_a["distance_m"],
            has_rows,
        )
        last_piece = CutSegment(
            dt_end,
            paused_end,
            end_from["speed_mps"],
            end_from["hr_bpm"],
            end_values["distance_m"] - end_from["distance_m"],
            inner,
        )
        whole = WholeSegments(dt, paused, full_s, full_e, many)
        stats["time_in_target_s"] = np.where(
            has_rows, _time_in_target(targets, cols, whole, (first_piece, last_piece)), np.nan
        )

    out = {f"start_{c}": at_a[c] for c in CUMULATIVE} | {f"end_{c}": at_b[c] for c in CUMULATIVE}
    out |= {
        "start_interpolated": ~at_a["exact"],
        "end_interpolated": ~at_b["exact"],
        "start_out_of_range": at_a["out_of_range"],
        "end_out_of_range": at_b["out_of_range"],
    }
    return out | stats


@dataclass
class CutSegment:
    """Per interval, the segment cut by one of its boundaries: duration, paused time, the held
    speed and heart rate, distance covered; ``present`` where the interval has that segment."""

    dt: np.ndarray
    paused: np.ndarray
    speed: np.ndarray
    hr: np.ndarray
    distance: np.ndarray
    present: np.ndarray


@dataclass
class WholeSegments:
    """Per sample, the segment to the next sample (``dt``, ``paused``); per interval, the range
    [s, e) of its whole segments, used where ``present`` (two or more samples inside)."""

    dt: np.ndarray
    paused: np.ndarray
    s: np.ndarray
    e: np.ndarray
    present: np.ndarray


def _time_in_target(targets, cols: A.Columns, whole: WholeSegments, cut: tuple) -> np.ndarray:
    """Time inside [target_low, target_high] of speed (the held device speed, else distance /
    time over the segment) or heart rate, pauses excluded: the two boundary-cut segments
    (``cut``) plus the whole segments between."""
    kind, low, high = targets
    is_speed = kind == "speed"
    is_hr = kind == "heart_rate"

    def seconds_inside(dt, paused, held_speed, ddist, held_hr, owner=slice(None)):
        with np.errstate(divide="ignore", invalid="ignore"):
            derived = np.where(dt > 0, ddist / dt, np.nan)
        speed = np.where(np.isnan(held_speed), derived, held_speed)
        value = np.where(is_speed[owner], speed, np.where(is_hr[owner], held_hr, np.nan))
        inside = (value >= low[owner]) & (value <= high[owner])
        contribution = np.where(inside, dt - paused, 0.0)
        return np.where(np.isnan(contribution), 0.0, contribution)

    total = sum(
        np.where(p.present, seconds_inside(p.dt, p.paused, p.speed, p.distance, p.hr), 0.0)
        for p in cut
    )
    # Whole segments: one row per (interval, sample) pair of the targeted intervals only.
    targeted = np.flatnonzero(whole.present & (is_speed | is_hr))
    lengths = (whole.e - whole.s)[targeted]
    if lengths.sum() > 0:
        owner = np.repeat(targeted, lengths)
        offsets = np.cumsum(lengths) - lengths
        idx = (
            np.arange(lengths.sum())
            - np.repeat(offsets, lengths)
            + np.repeat(whole.s[targeted], lengths)
        )
        ok = np.ones(len(idx), bool)
        got = cols.lookup(
            [
                ("next", "distance_m", idx + 1, ok),
                ("distance", "distance_m", idx, ok),
                ("speed", "speed_mps", idx, ok),
                ("hr", "hr_bpm", idx, ok),
            ]
        )
        contribution = seconds_inside(
            whole.dt[idx],
            whole.paused[idx],
            got["speed"],
            got["next"] - got["distance"],
            got["hr"],
            owner,
        )
        total = total + np.bincount(owner, weights=contribution, minlength=len(total))
    return total
