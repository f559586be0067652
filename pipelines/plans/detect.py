"""Where each planned step was run, found in the signal itself (evidence ``detected``).

Athletes do not run a plan to the second: warm-ups run longer or shorter (or before the watch
starts), recoveries stretch, rests are stood, a rep is added or skipped. So the plan is not
laid over the samples from the first one; it is *aligned* to them:

1. **Signal.** Per sample, the speed the device reports (else the distance to the next sample
   over the gap), held until the next sample; zero while the timer stands. It is taken
   relative to the session's typical moving speed, so one set of costs fits every athlete.
2. **Candidate boundaries.** Change points: samples where the mean signal of the ``window_s``
   seconds after differs from the ``window_s`` seconds before, kept where that difference
   peaks; plus every lap start (auto or manual), every pause edge, and the first and last
   sample. At most ``3 × steps + 12`` per session, strongest first: per session work is
   bounded.
3. **Alignment.** Dynamic programming assigns the planned steps, in order, to consecutive
   stretches between candidates. A stretch costs how far its signal is from the level the step
   asks for (its speed target, else a level by kind from the session itself: work fast,
   warm-up, recovery and cool-down easy, rest near still) plus how far its size is from the
   planned size (a soft prior: firm for work steps, loose for recoveries, loose for the
   warm-up and cool-down, none for open steps). Running before the first step or after the
   last costs a little per second (the watch started early or stopped late); a step may be
   skipped at a price that grows with its planned size. Sessions are aligned in batches of
   equal padded size, as whole arrays.
4. **Refinement.** Each boundary moves to the split of the samples around it that best
   separates two levels, then inside the sample gap that holds it to the instant where the
   two levels' speeds account for the gap's distance. The intervals module measures the
   resulting spans exactly at those instants.
5. **Confidence** per step: how close its size is to the plan, times (for work steps) how
   clearly its level stands apart from its neighbours as the plan says it should.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.intervals import grouped
from pipelines.intervals.grouped import int_key
from pipelines.plans.model import planned_step_seconds

SPAN_SCHEMA: dict[str, pl.DataType] = {
    "planned_session_id": pl.String(),
    "session_id": pl.String(),
    "step_index": pl.Int64(),
    "start_s": pl.Float64(),
    "end_s": pl.Float64(),
    "evidence": pl.String(),
}


@dataclass(frozen=True)
class DetectConfig:
    window_s: float = 20.0  # change points: mean of this long before vs after
    min_change: float = 0.08  # … differing by at least this share of the typical speed
    refine_window_s: float = 15.0  # boundary refinement: samples this far either side
    held_speed_max_gap_s: float = 3.0  # longer gaps take their speed from the distance
    median_samples: int = 3  # the signal's running median (samples)
    ramp_s: float = 3.0  # how long a change of pace takes
    max_steps: int = 80  # sessions with more planned steps are not aligned (bounded work)
    min_candidates: int = 48  # candidate boundaries per session: 3 per step + 12, at least this
    batch_cells: int = 6_000_000  # sessions × candidates² aligned at once (memory bound)
    # Soft size priors, per second of planned time: how much a stretch's size may stray.
    size_weight_work: float = 2.0
    size_weight_recovery: float = 0.3
    size_weight_ends: float = 0.05  # warm-up and cool-down
    # Skipping a step costs this much per second of its planned time.
    skip_work: float = 0.15
    skip_recovery: float = 0.05
    skip_ends: float = 0.01
    # Running before the first step or after the last (the watch started early, stopped
    # late): as costly as a stretch off its level, since a warm-up or cool-down not recorded
    # is a skipped step instead.
    outside_per_s: float = 0.2
    # Levels by kind, from the session's own speeds (quantiles of the moving signal) where the
    # plan does not tell (see _plan_shares).
    fast_quantile: float = 0.9
    easy_quantile: float = 0.4
    rest_level: float = 0.3  # a rest's level as a share of the easy level
    under_weight: float = 0.1  # easy steps: share of the cost of being slower than the level
    warmup_over_weight: float = 1.5  # the warm-up: cost of running fast, against other steps


_KIND_CODE = {"warmup": 0, "cooldown": 0, "work": 1, "recovery": 2, "rest": 3}


def _stream(pairs: pl.DataFrame, samples: pl.DataFrame, config: DetectConfig) -> pl.DataFrame:
    """The paired sessions' samples in (session code, time) order with the signal: ``v``
    (m/s, held until the next sample; 0 while the timer stands), ``dt`` to the next sample."""
    ids = pairs["session_id"].unique().implode()
    s = (
        samples.filter(pl.col("session_id").is_in(ids))
        .with_columns(int_key("session_id").alias("_code"))
        .sort("_code", "t_s")
        # Sorted by session: window operations compare neighbours (grouped.*), no hashing.
        .with_columns(
            grouped.ffill(pl.col("timer_s"), "_code"),
            grouped.ffill(pl.col("distance_m"), "_code").fill_null(0.0),
            pl.when(grouped.first_of_group("_code"))
            .then(pl.col("t_s"))
            .forward_fill()
            .alias("_t0"),
        )
        .with_columns(
            pl.col("timer_s").fill_null(pl.col("t_s") - pl.col("_t0")),
            (grouped.next_(pl.col("t_s"), "_code") - pl.col("t_s")).fill_null(0.0).alias("dt"),
        )
    )
    d_gap = grouped.next_(pl.col("distance_m"), "_code") - pl.col("distance_m")
    timer_gap = grouped.next_(pl.col("timer_s"), "_code") - pl.col("timer_s")
    speed = "speed_mps" if "speed_mps" in s.columns else None
    derived = pl.when(pl.col("dt") > 0).then(d_gap / pl.col("dt"))
    # The device's speed over short gaps (GPS distance is noisy over a second or two); the
    # distance over long ones, where a held speed goes stale (a watch records nothing while
    # its wearer stands: the last speed would hold through the whole stop).
    measured = (
        pl.when(pl.col("dt") <= config.held_speed_max_gap_s)
        .then(pl.coalesce(pl.col(speed), derived))
        .otherwise(pl.coalesce(derived, pl.col(speed)))
        if speed
        else derived
    )
    moving = (timer_gap > 0.5 * pl.col("dt")) & (pl.col("dt") > 0)
    # A running median over a few samples: GPS speed spikes by a metre per second now and then,
    # and one spike beside a boundary would pull it by seconds.
    signal = pl.when(moving).then(measured.clip(0.0, 100.0)).otherwise(0.0).fill_null(0.0)
    return s.select(
        "session_id",
        "_code",
        "t_s",
        "timer_s",
        "distance_m",
        "dt",
        signal.rolling_median(config.median_samples, min_samples=1, center=True)
        .over("_code")
        .alias("v"),
        moving.fill_null(False).alias("moving"),
    )


@dataclass
class _Stream:
    """Numpy views of the stream with per-session prefix sums (exclusive: row i sums the
    gaps before it, so a stretch between rows a and b is ``q[b] - q[a]``)."""

    t: np.ndarray
    timer: np.ndarray
    dist: np.ndarray
    v: np.ndarray  # relative to the session's typical speed
    rank: np.ndarray  # each row's session, 0, 1, … in stream order
    first: np.ndarray  # first row of each session (by code rank)
    last: np.ndarray  # last row
    ref: np.ndarray  # typical moving speed per session, m/s
    fast: np.ndarray  # per session, relative
    easy: np.ndarray
    q1: np.ndarray  # Σ v·dt
    q2: np.ndarray  # Σ v²·dt
    # Σ (v − level)²·dt above and below the easy and the rest level: easy steps pay fully for
    # running faster than easy, little for standing or walking (a recovery may be stood).
    easy_over: np.ndarray
    easy_under: np.ndarray
    rest_over: np.ndarray
    rest_under: np.ndarray
    key: np.ndarray  # session rank × span + time since its first sample: one sorted axis
    span: float


def _plan_shares(pairs: pl.DataFrame, steps: pl.DataFrame) -> pl.DataFrame:
    """Per paired session, which quantiles of its moving speed stand for the plan's easy and
    fast levels: the middle of the share of planned time that is easy, and of the share that
    is work (a tempo session is mostly fast, a session of short reps mostly easy)."""
    seconds = planned_step_seconds().fill_null(300.0)  # an open step: a few minutes
    work = pl.col("kind") == "work"
    return (
        steps.with_columns(seconds.alias("_s"))
        .group_by("planned_session_id")
        .agg(
            (pl.col("_s").filter(work).sum() / pl.col("_s").sum()).alias("work_share"),
            (pl.col("_s").filter(~work).sum() / pl.col("_s").sum()).alias("easy_share"),
        )
        .join(pairs.select("planned_session_id", "session_id"), on="planned_session_id")
        .select(
            "session_id",
            (1 - pl.col("work_share") / 2).clip(0.5, 0.95).fill_null(0.9).alias("fast_q"),
            (pl.col("easy_share") / 2).clip(0.05, 0.5).fill_null(0.4).alias("easy_q"),
        )
        .unique("session_id")
    )


def _weighted_quantile(q: str) -> pl.Expr:
    """Per session, the time-weighted quantile ``q`` (a column) of the moving signal."""
    return pl.col("v").filter(pl.col("_frac") >= pl.col(q)).first()


def _prepare(
    stream: pl.DataFrame, shares: pl.DataFrame, config: DetectConfig
) -> tuple[_Stream, pl.DataFrame]:
    rank = stream["_code"].rle_id().to_numpy()
    # Levels from the moving signal, time-weighted (smart recording samples the changes).
    moving = (
        stream.with_columns(pl.Series("_rank", rank))
        .filter(pl.col("moving") & (pl.col("v") > 0.3))
        .sort("_rank", "v")
        .with_columns((pl.col("dt").cum_sum() / pl.col("dt").sum()).over("_rank").alias("_frac"))
        .join(shares, on="session_id", how="left")
        .with_columns(
            pl.col("fast_q").fill_null(config.fast_quantile),
            pl.col("easy_q").fill_null(config.easy_quantile),
            pl.lit(0.5).alias("half"),
        )
        .group_by("_rank")
        .agg(
            _weighted_quantile("half").alias("ref"),
            _weighted_quantile("fast_q").alias("fast"),
            _weighted_quantile("easy_q").alias("easy"),
        )
    )
    levels = (
        stream.with_columns(pl.Series("_rank", rank))
        .group_by("_rank", maintain_order=True)
        .agg(pl.col("session_id").first())
        .join(moving, on="_rank", how="left", maintain_order="left")
        .with_columns(pl.col("ref").fill_null(1.0).clip(0.3, None))
        .with_columns(
            (pl.col("fast") / pl.col("ref")).fill_null(1.2).alias("fast"),
            (pl.col("easy") / pl.col("ref")).fill_null(0.9).alias("easy"),
        )
    )
    ref = levels["ref"].to_numpy()
    t = stream["t_s"].to_numpy().astype(np.float64)
    starts = np.flatnonzero(np.diff(rank, prepend=-1))
    last = np.append(starts[1:], len(t)) - 1
    v = stream["v"].to_numpy() / ref[rank]
    dt = stream["dt"].to_numpy()

    def prefix(values: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(values * dt)])[:-1]

    easy = levels["easy"].to_numpy()[rank]
    rest = config.rest_level * easy
    since = t - t[starts][rank]
    span = float(since.max(initial=0.0)) + 4 * config.window_s + 10.0
    return (
        _Stream(
            t=t,
            timer=stream["timer_s"].to_numpy().astype(np.float64),
            dist=stream["distance_m"].to_numpy().astype(np.float64),
            v=v,
            rank=rank,
            first=starts,
            last=last,
            ref=ref,
            fast=levels["fast"].to_numpy(),
            easy=levels["easy"].to_numpy(),
            q1=prefix(v),
            q2=prefix(v * v),
            easy_over=prefix(np.maximum(v - easy, 0.0) ** 2),
            easy_under=prefix(np.maximum(easy - v, 0.0) ** 2),
            rest_over=prefix(np.maximum(v - rest, 0.0) ** 2),
            rest_under=prefix(np.maximum(rest - v, 0.0) ** 2),
            key=rank * span + since,
            span=span,
        ),
        levels.select("_rank", "session_id"),
    )


def _q1_around(s: _Stream, rank: np.ndarray, shift: float) -> np.ndarray:
    """Σ v·dt from each sample's session start to ``shift`` seconds from the sample (clamped
    into the session): exact, since the signal holds between samples. On the one sorted key
    axis, so one binary search answers every sample at once."""
    lo, hi = s.key[s.first][rank], s.key[s.last][rank]
    at = np.clip(s.key + shift, lo, hi)
    row = np.searchsorted(s.key, at, side="right") - 1
    return s.q1[row] + s.v[row] * (at - s.key[row])


def _change_points(s: _Stream, config: DetectConfig) -> tuple[np.ndarray, np.ndarray]:
    """(rows, strength) of the samples where the signal's level changes most, one per change."""
    rank = s.rank
    w = config.window_s
    left_len = np.minimum(w, s.t - s.t[s.first][rank])
    right_len = np.minimum(w, s.t[s.last][rank] - s.t)
    left = (s.q1 - _q1_around(s, rank, -w)) / np.maximum(left_len, 1e-9)
    right = (_q1_around(s, rank, w) - s.q1) / np.maximum(right_len, 1e-9)
    score = np.abs(right - left)
    score[(left_len < w / 2) | (right_len < w / 2)] = 0.0
    # Peaks: at least the neighbours in the same session, and strong enough.
    prev_score = np.concatenate([[0.0], score[:-1]])
    next_score = np.concatenate([score[1:], [0.0]])
    prev_score[s.first] = 0.0
    next_score[s.last] = 0.0
    peak = (score >= prev_score) & (score > next_score) & (score >= config.min_change)
    rows = np.flatnonzero(peak)
    strength = score[rows]
    # One peak per change: of two peaks closer than half a window, the weaker goes.
    for _ in range(4):
        if len(rows) < 2:
            break
        same = (rank[rows][1:] == rank[rows][:-1]) & (np.diff(s.t[rows]) < w / 2)
        weaker_left = same & (strength[:-1] < strength[1:])
        weaker_right = same & ~weaker_left
        drop = np.zeros(len(rows), dtype=bool)
        drop[:-1] |= weaker_left
        drop[1:] |= weaker_right
        if not drop.any():
            break
        rows, strength = rows[~drop], strength[~drop]
    return rows, strength


def _planned_rows(s: _Stream, work: pl.DataFrame, steps: pl.DataFrame) -> np.ndarray:
    """The samples where each planned step would end were the plan run to the watch from the
    session's first sample (time steps on the timer, distance steps on the distance; an open
    step ends the walk): an athlete who runs the plan as written changes pace there, and a
    step whose end shows no change of pace (a recovery jogged into the cool-down) ends there
    too. One binary search per step position, over every session at once."""
    rank_of_row = s.rank
    # Per session the timer and the distance as one non-decreasing axis each.
    big = 1e9
    axes = {
        name: np.maximum.accumulate(rank_of_row * big + np.nan_to_num(values))
        for name, values in (("time", s.timer), ("distance", s.dist))
    }
    plan = (
        work.select("_rank", "planned_session_id")
        .join(steps, on="planned_session_id")
        .sort("_rank", "step_index")
    )
    rank = np.unique(plan["_rank"].to_numpy()).astype(np.int64)
    row = s.first[rank].copy()
    alive = np.ones(len(rank), dtype=bool)
    found = []
    by_position = plan.with_columns(pl.int_range(pl.len()).over("_rank").alias("_k"))
    for k in range(int(by_position["_k"].max() or -1) + 1):
        at = by_position.filter(pl.col("_k") == k)
        where = np.searchsorted(rank, at["_rank"].to_numpy())
        kind = at["duration_type"].to_numpy()
        size = np.where(
            kind == "time",
            at["planned_duration_s"].fill_null(0.0).to_numpy(),
            at["planned_distance_m"].fill_null(0.0).to_numpy(),
        )
        alive[where[(kind != "time") & (kind != "distance")]] = False
        for name, pick in (("time", kind == "time"), ("distance", kind == "distance")):
            idx = where[pick & alive[where]]
            if not len(idx):
                continue
            axis = axes[name]
            goal = axis[row[idx]] + size[pick & alive[where]]
            end = np.searchsorted(axis, goal, side="left")
            ok = end <= s.last[rank[idx]]
            row[idx[ok]] = end[ok]
            alive[idx[~ok]] = False
            found.append(end[ok])
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def _candidates(
    s: _Stream,
    ranks: pl.DataFrame,
    laps: pl.DataFrame,
    moving: np.ndarray,
    n_steps: pl.DataFrame,
    planned_rows: np.ndarray,
    config: DetectConfig,
) -> pl.DataFrame:
    """Candidate rows per session (``_rank``, ``row``), in time order: at most
    ``3 × steps + 12`` (and at least ``min_candidates``), strongest first."""
    rank_of_row = s.rank
    peak_rows, peak_strength = _change_points(s, config)
    # Lap starts, at the first sample at or after them.
    lap_frame = laps.join(ranks, on="session_id").select("_rank", "start_s")
    lap_rank = lap_frame["_rank"].to_numpy().astype(np.int64)
    lap_x = lap_frame["start_s"].to_numpy()
    lap_rows = np.searchsorted(
        s.key, lap_rank * s.span + (lap_x - s.t[s.first[lap_rank]]), side="left"
    )
    lap_rows = np.clip(lap_rows, s.first[lap_rank], s.last[lap_rank]) if len(lap_rows) else lap_rows
    # Pause edges: where the signal starts or stops moving.
    edge = np.flatnonzero(np.diff(moving.astype(np.int8), prepend=moving[:1].astype(np.int8)))
    edge_rows = np.concatenate([edge, edge + 1])
    edge_rows = edge_rows[edge_rows < len(s.t)]
    ends = np.concatenate([s.first, s.last])
    rows = np.concatenate([ends, peak_rows, planned_rows, lap_rows, edge_rows]).astype(np.int64)
    priority = np.concatenate(
        [
            np.full(len(ends), np.inf),
            peak_strength,
            np.full(len(planned_rows), 0.95 * config.min_change),
            np.full(len(lap_rows), 0.9 * config.min_change),
            np.full(len(edge_rows), 0.8 * config.min_change),
        ]
    )
    limit = n_steps.with_columns(
        (3 * pl.col("n_steps") + 12)
        .clip(config.min_candidates, 3 * config.max_steps + 12)
        .alias("limit")
    ).select("_rank", "limit")
    return (
        pl.DataFrame({"_rank": rank_of_row[rows], "row": rows, "priority": priority})
        .sort("_rank", "row", "priority", descending=[False, False, True])
        .unique(["_rank", "row"], keep="first", maintain_order=True)
        .join(limit, on="_rank")
        .sort("_rank", "priority", "row", descending=[False, True, False])
        .filter(pl.int_range(pl.len()).over("_rank") < pl.col("limit"))
        .sort("_rank", "row")
        .select("_rank", "row")
    )


def detect_steps(
    pairs: pl.DataFrame,
    steps: pl.DataFrame,
    samples: pl.DataFrame,
    laps: pl.DataFrame,
    config: DetectConfig = DetectConfig(),
) -> pl.DataFrame:
    """Spans (``SPAN_SCHEMA``, evidence ``detected``) of every planned step found in the
    paired activities' samples; a skipped step has no span."""
    stream = _stream(pairs, samples, config)
    if not stream.height or not pairs.height:
        return pl.DataFrame(schema=SPAN_SCHEMA)
    s, ranks = _prepare(stream, _plan_shares(pairs, steps), config)
    n_steps = steps.group_by("planned_session_id").agg(pl.len().alias("n_steps"))
    work = (
        pairs.select("planned_session_id", "session_id")
        .join(ranks, on="session_id")
        .join(n_steps, on="planned_session_id")
        .filter(pl.col("n_steps") <= config.max_steps)
        .with_row_index("_pair")
    )
    if not work.height:
        return pl.DataFrame(schema=SPAN_SCHEMA)
    per_session = work.group_by("_rank").agg(pl.col("n_steps").max())
    planned = _planned_rows(s, work, steps)
    cands = _candidates(s, ranks, laps, stream["moving"].to_numpy(), per_session, planned, config)
    bounds = _align(s, work, steps, cands, config)
    return _spans(s, work, bounds, config)


def _padded(values: pl.DataFrame, group: str, column: str, width: int, fill: float) -> np.ndarray:
    """A ``group``-ordered, position-ordered long column as a (groups × width) array."""
    counts = values.group_by(group, maintain_order=True).len()["len"].to_numpy()
    out = np.full((len(counts), width), fill, dtype=np.float64)
    pos = values.select(pl.int_range(pl.len()).over(group)).to_series().to_numpy()
    out[np.repeat(np.arange(len(counts)), counts), pos] = values[column].to_numpy()
    return out


def _align(
    s: _Stream,
    work: pl.DataFrame,
    steps: pl.DataFrame,
    cands: pl.DataFrame,
    config: DetectConfig,
) -> pl.DataFrame:
    """Boundary candidate rows per pair: ``_pair``, ``boundary`` (0 … n_steps), ``row``."""
    sizes = cands.group_by("_rank").len().rename({"len": "n_cands"})
    # Every per-batch array is in _pair order: the join must not reorder them.
    work = (
        work.join(sizes, on="_rank")
        .sort("_pair")
        .with_columns(
            ((pl.col("n_cands") + 7) // 8 * 8).alias("n_pad"),
            ((pl.col("n_steps") + 3) // 4 * 4).alias("k_pad"),
        )
    )
    out = []
    for (n_pad, k_pad), group in work.partition_by(["n_pad", "k_pad"], as_dict=True).items():
        per_batch = max(1, config.batch_cells // (n_pad * n_pad))
        for start in range(0, group.height, per_batch):
            batch = group.slice(start, per_batch)
            out.append(_align_batch(s, batch, steps, cands, int(n_pad), int(k_pad), config))
    return pl.concat(out)


def _align_batch(
    s: _Stream,
    batch: pl.DataFrame,
    steps: pl.DataFrame,
    cands: pl.DataFrame,
    n_pad: int,
    k_pad: int,
    config: DetectConfig,
) -> pl.DataFrame:
    b = batch.height
    rank = batch["_rank"].to_numpy().astype(np.int64)
    mine = batch.select("_pair", "_rank").join(cands, on="_rank").sort("_pair", "row")
    rows = _padded(mine, "_pair", "row", n_pad, -1).astype(np.int64)
    valid = rows >= 0
    n_valid = valid.sum(axis=1)
    safe = np.where(valid, rows, s.last[rank][:, None])
    # Values at the candidates; padding repeats the last sample (zero-size stretches).
    at_t = s.t[safe] - s.t[s.first[rank]][:, None]
    at_q1, at_q2 = s.q1[safe], s.q2[safe]
    one_sided = {
        name: getattr(s, name)[safe]
        for name in ("easy_over", "easy_under", "rest_over", "rest_under")
    }
    at_timer, at_dist = s.timer[safe], s.dist[safe]

    st = (
        batch.select("_pair", "planned_session_id", "_rank")
        .join(steps, on="planned_session_id")
        .sort("_pair", "step_index")
    )
    kind = st["kind"].replace_strict(_KIND_CODE, default=4, return_dtype=pl.Int64)
    fast = s.fast[st["_rank"].to_numpy()]
    easy = s.easy[st["_rank"].to_numpy()]
    ref = s.ref[st["_rank"].to_numpy()]
    kind_np = kind.to_numpy()
    target_mid = ((st["target_low"] + st["target_high"]) / 2).to_numpy()
    speed_target = (st["target_type"] == "speed").to_numpy() & np.isfinite(target_mid)
    # How a stretch's signal is scored: 0 around a level (work: the target, else the session's
    # fast level), 1 one-sided against the easy level, 2 one-sided against the rest level,
    # 3 around its own mean (kinds with no expected level), 4 as 1 but running fast costs
    # more (an extra rep is run at the end far more often than before the first).
    is_warmup = (st["kind"] == "warmup").to_numpy()
    mode = np.select(
        [speed_target | (kind_np == 1), kind_np == 3, kind_np == 4, is_warmup],
        [0, 2, 3, 4],
        default=1,
    )
    level = np.where(speed_target, target_mid / ref, np.where(kind_np == 1, fast, easy))
    # Planned size in seconds (distance steps at the expected speed).
    planned_s = st["planned_duration_s"].fill_null(np.nan).to_numpy()
    planned_m = st["planned_distance_m"].fill_null(np.nan).to_numpy()
    speed_abs = np.where(np.isfinite(level) & (level > 0.2), level, easy) * ref
    size_kind = np.select(
        [st["duration_type"].to_numpy() == "time", st["duration_type"].to_numpy() == "distance"],
        [1, 2],
        default=0,
    )
    size_kind = np.where(
        (size_kind == 1) & ~(planned_s > 0),
        0,
        np.where((size_kind == 2) & ~(planned_m > 0), 0, size_kind),
    )
    time_s = np.where(
        size_kind == 1, planned_s, np.where(size_kind == 2, planned_m / speed_abs, 0.0)
    )
    weight = np.select(
        [kind_np == 1, kind_np == 0],
        [config.size_weight_work, config.size_weight_ends],
        default=config.size_weight_recovery,
    )
    # Athletes cut a session short far more often than they leave out its first steps:
    # skipping a step costs up to twice as much at the start as at the end.
    position = st.select(
        (pl.col("step_index") / pl.col("step_index").max().over("_pair")).fill_nan(1.0)
    ).to_series()
    skip = (
        np.select(
            [kind_np == 1, kind_np == 0],
            [config.skip_work, config.skip_ends],
            default=config.skip_recovery,
        )
        * np.maximum(time_s, 60.0)
        * (2.0 - position.fill_null(1.0).to_numpy())
    )
    feat = st.select("_pair").with_columns(
        pl.Series("level", level),
        pl.Series("mode", mode.astype(np.float64)),
        # Recoveries and rests are timed on the clock: a stood rest often stops the timer.
        pl.Series("clock", np.isin(kind_np, (2, 3)).astype(np.float64)),
        pl.Series("size_kind", size_kind.astype(np.float64)),
        pl.Series("planned", np.where(size_kind == 1, planned_s, planned_m)),
        pl.Series("time_s", time_s),
        pl.Series("weight", weight),
        pl.Series("skip", skip),
    )
    lv = _padded(feat, "_pair", "level", k_pad, 1.0)
    ck = _padded(feat, "_pair", "clock", k_pad, 0.0)
    md = _padded(feat, "_pair", "mode", k_pad, 3.0)
    sk = _padded(feat, "_pair", "size_kind", k_pad, -1.0)  # -1: padding step
    planned = _padded(feat, "_pair", "planned", k_pad, 0.0)
    tsec = _padded(feat, "_pair", "time_s", k_pad, 0.0)
    wt = _padded(feat, "_pair", "weight", k_pad, 0.0)
    skp = _padded(feat, "_pair", "skip", k_pad, 0.0)

    # Stretch sums between candidates i (axis 1) and j (axis 2).
    def between(a: np.ndarray) -> np.ndarray:
        return a[:, None, :] - a[:, :, None]

    e = between(at_t)
    q1, q2 = between(at_q1), between(at_q2)
    upper = (
        np.triu(np.ones((n_pad, n_pad), dtype=bool), 1)[None]
        & valid[:, :, None]
        & valid[:, None, :]
    )
    inf = np.inf
    # Everything that does not depend on the step is computed once per batch: the fits of
    # the modes without a level of their own, the log sizes, the stretches that may not be.
    under = config.under_weight
    easy_over, easy_under = (
        between(one_sided["easy_over"]),
        under * between(one_sided["easy_under"]),
    )
    fixed_fit = {
        1: easy_over + easy_under,
        2: between(one_sided["rest_over"]) + under * between(one_sided["rest_under"]),
        3: np.where(e > 0, q2 - q1 * q1 / np.maximum(e, 1e-9), 0.0),
        4: config.warmup_over_weight * easy_over + easy_under,
    }
    del easy_over, easy_under

    def log_size(a: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(a, 0.0) + 10.0)

    log_sizes = {
        "timer": log_size(between(at_timer)),
        "clock": log_size(e),
        "dist": log_size(between(at_dist)),
    }
    forbidden = np.where(upper, 0.0, inf)
    del upper
    # Before the first step: the stretch from the first sample (lead-in).
    cost = config.outside_per_s * at_t
    cost = np.where(valid, cost, inf)
    back = np.zeros((b, k_pad, n_pad), dtype=np.int32)
    idx = np.arange(n_pad)
    stretch = np.empty_like(e)
    for k in range(k_pad):
        # Each pair's stretch costs, filled pair group by pair group (one mode and one size
        # kind each): only the arrays a pair needs are touched.
        stretch[:] = 0.0
        for mode in np.unique(md[:, k]).astype(int):
            pick = md[:, k] == mode
            if mode == 0:
                level = lv[pick, k][:, None, None]
                stretch[pick] = q2[pick] - 2 * level * q1[pick] + level * level * e[pick]
            else:
                stretch[pick] = fixed_fit[mode][pick]
        clock = ck[:, k] > 0
        for name, pick in (
            ("timer", (sk[:, k] == 1) & ~clock),
            ("clock", (sk[:, k] == 1) & clock),
            ("dist", sk[:, k] == 2),
        ):
            if not pick.any():
                continue
            ratio = log_sizes[name][pick] - np.log(planned[pick, k] + 10.0)[:, None, None]
            stretch[pick] += (wt[pick, k] * tsec[pick, k])[:, None, None] * ratio * ratio
        stretch += forbidden
        total = cost[:, :, None] + stretch  # (b, i, j)
        best_i = np.argmin(total, axis=1)
        best = np.take_along_axis(total, best_i[:, None, :], axis=1)[:, 0, :]
        # Skipping the step: its boundary stays where it is, at a price (none for padding).
        skip_cost = cost + np.where(sk[:, k] < 0, 0.0, skp[:, k])[:, None]
        take_skip = skip_cost <= best
        cost = np.where(take_skip, skip_cost, best)
        back[:, k, :] = np.where(take_skip, idx[None, :], best_i)
        # A padding step can only be skipped.
        pad = sk[:, k] < 0
        cost[pad] = skip_cost[pad]
        back[pad, k, :] = idx[None, :]
    # After the last step: the stretch to the last sample (tail).
    last_col = n_valid - 1
    tail = config.outside_per_s * (at_t[np.arange(b), last_col][:, None] - at_t)
    final = np.where(valid, cost + tail, inf)
    j = np.argmin(final, axis=1)
    # Backtrack: boundary k+1 is j, boundary k is back[k][j].
    n_real = batch["n_steps"].to_numpy()
    bound = np.zeros((b, k_pad + 1), dtype=np.int64)
    bound[:, k_pad] = j
    for k in range(k_pad - 1, -1, -1):
        bound[:, k] = back[np.arange(b), k, bound[:, k + 1]]
    pair = batch["_pair"].to_numpy()
    out_rows = rows[np.arange(b)[:, None], bound]
    keep = np.arange(k_pad + 1)[None, :] <= n_real[:, None]
    return pl.DataFrame(
        {
            "_pair": np.repeat(pair, k_pad + 1)[keep.ravel()],
            "boundary": np.tile(np.arange(k_pad + 1), b)[keep.ravel()],
            "row": out_rows.ravel()[keep.ravel()],
        }
    )


def _refine(
    s: _Stream,
    rank: np.ndarray,
    row: np.ndarray,
    window: tuple[np.ndarray, np.ndarray],
    levels: tuple[np.ndarray, np.ndarray],
    ramp_s: float,
) -> np.ndarray:
    """Instants of boundaries first placed at sample ``row``: the split of the samples inside
    ``window`` (instants) that fits the levels of the stretches before and after best (least
    squares), then the instant inside the gap before it where those two speeds account for the
    gap's distance."""
    lo_t, hi_t = window
    base = rank * s.span - s.t[s.first[rank]]
    # The samples at or before the window's start and at or after its end: a gap that
    # straddles an edge is inside the window, the change may be in it.
    lo = np.searchsorted(s.key, base + lo_t, side="right") - 1
    hi = np.searchsorted(s.key, base + hi_t, side="left")
    lo = np.clip(lo, s.first[rank], s.last[rank])
    hi = np.clip(hi, lo, s.last[rank])
    count = hi - lo  # splits lo+1 … hi
    refined = s.t[row].copy()
    ok = count >= 2
    if not ok.any():
        return refined
    which = np.repeat(np.flatnonzero(ok), count[ok])
    offset = np.arange(len(which)) - np.repeat(np.cumsum(count[ok]) - count[ok], count[ok])
    split = lo[which] + 1 + offset
    left_level, right_level = levels[0][which], levels[1][which]

    def misfit(x: np.ndarray, y: np.ndarray, level: np.ndarray) -> np.ndarray:
        e = s.t[y] - s.t[x]
        return s.q2[y] - s.q2[x] - 2 * level * (s.q1[y] - s.q1[x]) + level * level * e

    cost = misfit(lo[which], split, left_level) + misfit(split, hi[which], right_level)
    order = np.lexsort((cost, which))
    chosen = order[np.flatnonzero(np.diff(which[order], prepend=-1))]
    at = which[chosen]
    s_row = split[chosen]
    gap = s_row - 1
    dt = s.t[s_row] - s.t[gap]
    ref = s.ref[rank[at]]
    v_l, v_r = levels[0][at] * ref, levels[1][at] * ref
    moved = s.dist[s_row] - s.dist[gap]
    differ = np.abs(v_l - v_r) > 0.05 * ref
    inside = np.where(differ, (moved - v_r * dt) / np.where(differ, v_l - v_r, 1.0), 0.5 * dt)
    # A change of pace takes a few seconds, and the step begins where it begins (where a lap
    # button is pressed): the balance above finds the ramp's middle.
    onset = np.where(differ, 0.5 * ramp_s, 0.0)
    refined[at] = s.t[gap] + np.clip(inside, 0.0, dt) - onset
    return refined


def _spans(
    s: _Stream, work: pl.DataFrame, bounds: pl.DataFrame, config: DetectConfig
) -> pl.DataFrame:
    """Step spans from the aligned boundary rows: refined instants, skipped steps dropped."""
    distinct = (
        bounds.join(work.select("_pair", "_rank"), on="_pair")
        .select("_pair", "_rank", "row")
        .unique(maintain_order=True)
        .sort("_pair", "row")
        .with_columns(
            pl.col("row").shift(1).over("_pair").alias("prev_row"),
            pl.col("row").shift(-1).over("_pair").alias("next_row"),
        )
    )
    rank = distinct["_rank"].to_numpy().astype(np.int64)
    row = distinct["row"].to_numpy().astype(np.int64)
    # The first and last boundary may move too when the session runs on beyond them.
    prev_row = distinct["prev_row"].fill_null(-1).to_numpy()
    prev_row = np.where((prev_row < 0) & (row > s.first[rank]), s.first[rank], prev_row)
    next_row = distinct["next_row"].fill_null(-1).to_numpy()
    next_row = np.where((next_row < 0) & (row < s.last[rank]), s.last[rank], next_row)

    def mean_level(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        e = s.t[y] - s.t[x]
        return np.where(e > 0, (s.q1[y] - s.q1[x]) / np.maximum(e, 1e-9), 0.0)

    has_prev, has_next = prev_row >= 0, next_row >= 0
    prev_safe, next_safe = np.where(has_prev, prev_row, row), np.where(has_next, next_row, row)
    prev_t = np.where(has_prev, s.t[prev_safe], -np.inf)
    next_t = np.where(has_next, s.t[next_safe], np.inf)
    w = config.refine_window_s
    window = (
        np.maximum(s.t[row] - w, (s.t[row] + prev_t) / 2),
        np.minimum(s.t[row] + w, (s.t[row] + next_t) / 2),
    )
    levels = (mean_level(prev_safe, row), mean_level(row, next_safe))
    movable = has_prev & has_next
    at = np.where(movable, _refine(s, rank, row, window, levels, config.ramp_s), s.t[row])
    return (
        bounds.join(work.select("_pair", "planned_session_id", "session_id"), on="_pair")
        .join(distinct.select("_pair", "row", pl.Series("t", at)), on=["_pair", "row"])
        .sort("_pair", "boundary")
        .with_columns(
            pl.col("t").shift(-1).over("_pair").alias("end_s"),
            pl.col("row").shift(-1).over("_pair").alias("end_row"),
        )
        .filter(pl.col("end_row").is_not_null() & (pl.col("end_row") != pl.col("row")))
        .select(
            "planned_session_id",
            "session_id",
            pl.col("boundary").cast(pl.Int64).alias("step_index"),
            pl.col("t").alias("start_s"),
            "end_s",
            pl.lit("detected").alias("evidence"),
        )
    )
