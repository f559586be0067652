"""Planned sessions matched to activities, planned steps to stretches of those activities.

Session matching: a planned session goes to at most one activity of its user, of the same
sport family, whose local date is within ``tolerance_days`` of the planned date; among
candidates the one closest in date and then in size (duration, else distance) wins, each
activity serving at most one plan.

Step matching uses the best evidence the activity has:
1. ``wkt_step_index`` laps — the watch ran the workout: runs of laps with one step index, in
   order, are the steps;
2. manual laps — as many laps as planned steps, and not auto-laps (every 1 km/mile splits);
3. ``cut`` — the planned structure laid over the sample stream from the activity's first
   sample: each step ends where its planned timer time or distance is reached, found by
   inverting the cumulative timer/distance curve (linear between samples, as the intervals
   module interpolates).
All three give boundary instants; every metric then comes from the intervals module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.intervals import interval_metrics
from pipelines.intervals.grouped import int_key


@dataclass(frozen=True)
class MatchConfig:
    tolerance_days: int = 0
    # grade thresholds on session compliance (%): green within ±20 %, yellow within 50–150 %
    green: tuple[float, float] = (80.0, 120.0)
    yellow: tuple[float, float] = (50.0, 150.0)
    # a single-value target (e.g. "5:20/km") counts as met within this relative band
    single_target_tolerance: float = 0.03
    # share of steps that must be matched for a session to count as completed
    completed_step_share: float = 0.8


def sport_family(sport: pl.Expr) -> pl.Expr:
    s = sport.str.to_lowercase()
    return (
        pl.when(s.str.contains("run") | s.str.contains("jog"))
        .then(pl.lit("running"))
        .when(s.str.contains("bik") | s.str.contains("cycl") | s.str.contains("ride"))
        .then(pl.lit("cycling"))
        .when(s.str.contains("swim"))
        .then(pl.lit("swimming"))
        .when(s.str.contains("walk") | s.str.contains("hik"))
        .then(pl.lit("walking"))
        .otherwise(s)
    )


def match_sessions(
    planned: pl.DataFrame, sessions: pl.DataFrame, config: MatchConfig = MatchConfig()
) -> pl.DataFrame:
    """planned_session_id → session_id (null when missed), with the day offset."""
    activities = sessions.select(
        "session_id",
        "user_id",
        sport_family(pl.col("sport").fill_null("")).alias("family"),
        pl.coalesce("start_time_local", pl.col("start_time_utc").dt.replace_time_zone(None))
        .dt.date()
        .alias("activity_date"),
        pl.coalesce("timer_s", "elapsed_s").alias("actual_duration_s"),
        pl.col("distance_m").alias("actual_distance_m"),
    )
    plans = planned.select(
        "planned_session_id",
        "user_id",
        "planned_date",
        sport_family(pl.col("sport")).alias("family"),
        "estimated_duration_s",
        "planned_distance_m",
    )
    size_error = (
        pl.when(pl.col("estimated_duration_s") > 0)
        .then((pl.col("actual_duration_s") / pl.col("estimated_duration_s")).log().abs())
        .when(pl.col("planned_distance_m") > 0)
        .then((pl.col("actual_distance_m") / pl.col("planned_distance_m")).log().abs())
        .otherwise(0.0)
        .fill_nan(5.0)
        .fill_null(5.0)
    )
    candidates = (
        plans.join(activities, on=["user_id", "family"])
        .with_columns(
            (pl.col("activity_date") - pl.col("planned_date")).dt.total_days().alias("day_offset")
        )
        .filter(pl.col("day_offset").abs() <= config.tolerance_days)
        .with_columns((pl.col("day_offset").abs() * 10.0 + size_error).alias("score"))
        .sort("score", "planned_session_id", "session_id")
    )
    chosen = []
    # Greedy one-to-one assignment, best score first: each round takes the rows that are the
    # best remaining option for both their plan and their activity.
    while candidates.height:
        best = candidates.filter(
            (pl.int_range(pl.len()).over("planned_session_id") == 0)
            & (pl.int_range(pl.len()).over("session_id") == 0)
        )
        chosen.append(best.select("planned_session_id", "session_id", "day_offset"))
        candidates = candidates.join(
            best.select("planned_session_id"), on="planned_session_id", how="anti"
        ).join(best.select("session_id"), on="session_id", how="anti")
    pairs = (
        pl.concat(chosen)
        if chosen
        else pl.DataFrame(
            schema={
                "planned_session_id": pl.String(),
                "session_id": pl.String(),
                "day_offset": pl.Int64(),
            }
        )
    )
    return planned.select("planned_session_id").join(pairs, on="planned_session_id", how="left")


def _lap_evidence(pairs: pl.DataFrame, steps: pl.DataFrame, laps: pl.DataFrame) -> pl.DataFrame:
    """Step spans from laps: wkt_step_index runs first, else manual (non-auto) laps."""
    laps = laps.join(pairs.select("session_id", "planned_session_id"), on="session_id").sort(
        "session_id", "start_s"
    )
    n_steps = steps.group_by("planned_session_id").agg(pl.len().alias("n_steps"))
    with_index = laps.filter(pl.col("wkt_step_index").is_not_null())
    runs = (
        with_index.with_columns(
            (pl.col("wkt_step_index") != pl.col("wkt_step_index").shift(1).over("session_id"))
            .fill_null(True)
            .cum_sum()
            .over("session_id")
            .alias("run")
        )
        .group_by("planned_session_id", "session_id", "run")
        .agg(pl.col("start_s").min(), pl.col("end_s").max())
        .with_columns(
            (pl.col("run").rank("ordinal").over("session_id") - 1)
            .cast(pl.Int64)
            .alias("step_index"),
            pl.lit("wkt_step_index").alias("evidence"),
        )
    )
    no_index = laps.join(with_index.select("session_id").unique(), on="session_id", how="anti")
    lap_stats = no_index.group_by("session_id").agg(
        pl.len().alias("n_laps"),
        (pl.col("lap_trigger").is_in(["distance", "position_lap", "position_start"]))
        .mean()
        .alias("auto_share"),
        # Garmin API laps carry no trigger: near-identical 1 km / 1 mile splits are auto-laps.
        (
            (
                (pl.col("device_distance_m").fill_null(pl.col("distance_m")) / 1000.0 - 1).abs()
                < 0.02
            )
            | (
                (pl.col("device_distance_m").fill_null(pl.col("distance_m")) / 1609.344 - 1).abs()
                < 0.02
            )
        )
        .head(pl.len() - 1)
        .mean()
        .alias("split_share"),
    )
    manual = (
        no_index.join(lap_stats, on="session_id")
        .join(n_steps, on="planned_session_id")
        .filter(
            (pl.col("n_laps") == pl.col("n_steps"))
            & (pl.col("auto_share").fill_null(0.0) < 0.5)
            & (pl.col("split_share").fill_null(0.0) < 0.5)
        )
        .with_columns(
            (pl.col("start_s").rank("ordinal").over("session_id") - 1)
            .cast(pl.Int64)
            .alias("step_index"),
            pl.lit("manual_laps").alias("evidence"),
        )
    )
    columns = ["planned_session_id", "session_id", "step_index", "start_s", "end_s", "evidence"]
    return pl.concat([runs.select(columns), manual.select(columns)])


_SPAN_SCHEMA = {
    "planned_session_id": pl.String(),
    "session_id": pl.String(),
    "step_index": pl.Int64(),
    "start_s": pl.Float64(),
    "end_s": pl.Float64(),
    "evidence": pl.String(),
}


class _Curves:
    """The cut's sample stream (sorted by session, then time) made searchable per session.

    Every step position asks, for each session, where a cumulative column (timer, distance)
    first reaches a goal. A join against the whole stream per position costs a pass over every
    sample each time; here each session's rows are a contiguous block, each column is sorted
    once (by session, value, time: ties go to the earliest sample), and a goal is a binary
    search inside its session's block.
    """

    def __init__(self, stream: pl.DataFrame) -> None:
        """``stream``: session_id, _code, t_s, timer_s, distance_m, sorted by (_code, t_s)."""
        self.t = stream["t_s"].to_numpy()
        self.values = {c: stream[c].to_numpy() for c in ("timer_s", "distance_m")}
        code = stream["_code"].rle_id().to_numpy()  # 0, 1, … per session, in stream order
        starts = np.flatnonzero(np.diff(code, prepend=-1))
        self.first = starts  # first row of each session code
        self.end = np.append(starts[1:], len(code))  # one past its last row
        t, timer, distance = self.t, self.values["timer_s"], self.values["distance_m"]
        # Where each session's stream begins and ends.
        self.edges = pl.DataFrame(
            {
                "session_id": stream["session_id"].gather(starts),
                "_code": np.arange(len(starts)),
                "t": t[starts],
                "timer": timer[starts],
                "distance": distance[starts],
                "last_t": t[self.end - 1],
            }
        )
        self.order: dict[str, np.ndarray] = {}
        self.sorted: dict[str, np.ndarray] = {}
        for c, v in self.values.items():
            within = np.diff(v) >= 0
            if bool((within | (code[1:] != code[:-1])).all()):  # already rising per session
                self.order[c], self.sorted[c] = np.arange(len(v)), v
            else:
                order = (
                    stream.with_row_index("_row")
                    .with_columns(pl.Series("_code", code))
                    .sort("_code", c, "t_s")["_row"]
                    .to_numpy()
                    .astype(np.int64)
                )
                self.order[c], self.sorted[c] = order, v[order]

    def first_reaching(self, code: np.ndarray, goal: np.ndarray, column: str) -> np.ndarray:
        """Row of the first sample (in value, then time order) of each session whose
        ``column`` is ≥ its goal; -1 where none is."""
        values = self.sorted[column]
        lo, hi = self.first[code].copy(), self.end[code].copy()
        stop = hi.copy()
        while (active := lo < hi).any():
            mid = np.minimum((lo + hi) // 2, len(values) - 1)
            below = values[mid] < goal
            lo = np.where(active & below, mid + 1, lo)
            hi = np.where(active & ~below, mid, hi)
        found = lo < stop
        return np.where(found, self.order[column][np.where(found, lo, 0)], -1)


def _cut(pairs: pl.DataFrame, steps: pl.DataFrame, samples: pl.DataFrame) -> pl.DataFrame:
    """Lay the planned steps over the sample stream, step position by step position (a loop
    over positions, each vectorized over every session).

    Inside the last sample gap of a step the athlete is taken to keep the step's own pace
    (distance over timer time since the step began) until the watch would end the step.
    Interpolating linearly across that gap instead mixes in the next step's pace, and the
    error carries into every following step.
    """
    stream = (
        samples.filter(pl.col("session_id").is_in(pairs["session_id"].unique().implode()))
        # Sessions in the order of an integer code (only their contiguity matters: cheaper
        # than sorting the id strings), samples in time order.
        .with_columns(int_key("session_id").alias("_code"))
        .sort("_code", "t_s")
        .with_columns(
            pl.col("timer_s").fill_null(pl.col("t_s") - pl.col("t_s").min().over("_code")),
            pl.col("distance_m").forward_fill().over("_code").fill_null(0.0),
        )
        .select("session_id", "_code", "t_s", "timer_s", "distance_m")
    )
    if not stream.height:
        return pl.DataFrame(schema=_SPAN_SCHEMA)
    curves = _Curves(stream)
    state = pairs.join(curves.edges, on="session_id").select(
        "planned_session_id", "session_id", "_code", "t", "timer", "distance", "last_t"
    )
    # Every position's steps at once, with the session's step count, instead of a filter and
    # a join per position.
    by_position = steps.join(
        steps.group_by("planned_session_id").agg(pl.len().alias("n_steps")),
        on="planned_session_id",
    ).partition_by("step_index", as_dict=True)
    spans = []
    for position in range(int(steps["step_index"].max() or -1) + 1):
        at_position = by_position.get((position,))
        if at_position is None:
            break
        at = state.join(at_position, on="planned_session_id").with_columns(
            pl.when(pl.col("duration_type") == "time")
            .then(pl.col("timer") + pl.col("planned_duration_s"))
            .alias("timer_goal"),
            pl.when(pl.col("duration_type") == "distance")
            .then(pl.col("distance") + pl.col("planned_distance_m"))
            .alias("distance_goal"),
        )
        if not at.height:
            break
        at = _step_end(at, curves)
        spans.append(
            at.filter(pl.col("end_s") > pl.col("t")).select(
                "planned_session_id",
                "session_id",
                "step_index",
                pl.col("t").alias("start_s"),
                "end_s",
                pl.lit("cut").alias("evidence"),
            )
        )
        state = at.filter(pl.col("end_s").is_not_null()).select(
            "planned_session_id",
            "session_id",
            "_code",
            pl.col("end_s").alias("t"),
            pl.col("end_timer").alias("timer"),
            pl.col("end_distance").alias("distance"),
            "last_t",
        )
        # Steps after an open middle step or a truncated step have nothing left to cover.
        state = state.filter(pl.col("t") < pl.col("last_t"))
    return pl.concat(spans) if spans else pl.DataFrame(schema=_SPAN_SCHEMA)


def _first_reaching(at: pl.DataFrame, goal: str, column: str, curves: _Curves) -> pl.DataFrame:
    """For each row, the first sample whose ``column`` reaches ``goal`` (b) and the sample
    before it (a)."""
    wanted = at.filter(pl.col(goal).is_not_null())
    b = curves.first_reaching(wanted["_code"].to_numpy(), wanted[goal].to_numpy(), column)
    code = wanted["_code"].to_numpy()
    a = np.where((b >= 0) & (b > curves.first[code]), b - 1, -1)
    b_ok, a_ok = pl.Series(b >= 0), pl.Series(a >= 0)

    def at_row(values: np.ndarray, rows: np.ndarray, ok: pl.Series) -> pl.Expr:
        return pl.when(ok).then(pl.Series(values[np.maximum(rows, 0)]))

    t, timer, distance = curves.t, curves.values["timer_s"], curves.values["distance_m"]
    return wanted.select(
        "planned_session_id",
        at_row(t, b, b_ok).alias("b_t"),
        at_row(t, a, a_ok).alias("a_t"),
        at_row(timer, a, a_ok).alias("a_timer"),
        at_row(distance, a, a_ok).alias("a_distance"),
        at_row(timer, b, b_ok).alias("b_timer"),
        at_row(distance, b, b_ok).alias("b_distance"),
    )


def _step_end(at: pl.DataFrame, curves: _Curves) -> pl.DataFrame:
    """End instant, timer and distance of every step at this position."""
    timed = _first_reaching(at, "timer_goal", "timer_s", curves)
    ranged = _first_reaching(at, "distance_goal", "distance_m", curves)
    at = at.join(timed, on="planned_session_id", how="left").join(
        ranged, on="planned_session_id", how="left", suffix="_d"
    )
    # The step's own pace so far (timer-based, so pauses don't count).
    pace = lambda a_timer, a_distance: (  # noqa: E731
        pl.when((pl.col(a_timer) - pl.col("timer")) > 0).then(
            (pl.col(a_distance) - pl.col("distance")) / (pl.col(a_timer) - pl.col("timer"))
        )
    )
    inside = pl.col("a_t") >= pl.col("t")  # a sample of this step precedes the end
    inside_d = pl.col("a_t_d") >= pl.col("t")
    # time step: the timer fixes the instant exactly (linear between samples)
    t_end_time = (
        pl.when(pl.col("b_timer") > pl.col("a_timer"))
        .then(
            pl.col("a_t")
            + (pl.col("timer_goal") - pl.col("a_timer"))
            / (pl.col("b_timer") - pl.col("a_timer"))
            * (pl.col("b_t") - pl.col("a_t"))
        )
        .otherwise(pl.col("b_t"))
    )
    lin_distance = (
        pl.when(pl.col("b_t") > pl.col("a_t"))
        .then(
            pl.col("a_distance")
            + (t_end_time - pl.col("a_t"))
            / (pl.col("b_t") - pl.col("a_t"))
            * (pl.col("b_distance") - pl.col("a_distance"))
        )
        .otherwise(pl.col("b_distance"))
    )
    model_distance = (
        pl.col("a_distance")
        + pace("a_timer", "a_distance") * (pl.col("timer_goal") - pl.col("a_timer"))
    ).clip(pl.col("a_distance"), pl.col("b_distance"))
    # distance step: keep the step's pace from the last sample until the goal
    lin_t_d = (
        pl.when(pl.col("b_distance_d") > pl.col("a_distance_d"))
        .then(
            pl.col("a_t_d")
            + (pl.col("distance_goal") - pl.col("a_distance_d"))
            / (pl.col("b_distance_d") - pl.col("a_distance_d"))
            * (pl.col("b_t_d") - pl.col("a_t_d"))
        )
        .otherwise(pl.col("b_t_d"))
    )
    model_t_d = (
        pl.col("a_t_d")
        + (pl.col("distance_goal") - pl.col("a_distance_d")) / pace("a_timer_d", "a_distance_d")
    ).clip(pl.col("a_t_d"), pl.col("b_t_d"))
    timer_at_d = (
        pl.when(pl.col("b_t_d") > pl.col("a_t_d"))
        .then(
            pl.col("a_timer_d")
            + (pl.col("end_s") - pl.col("a_t_d"))
            / (pl.col("b_t_d") - pl.col("a_t_d"))
            * (pl.col("b_timer_d") - pl.col("a_timer_d"))
        )
        .otherwise(pl.col("b_timer_d"))
    )
    last_step = pl.col("step_index") == pl.col("n_steps") - 1
    return (
        at.with_columns(
            pl.when(pl.col("duration_type") == "time")
            .then(t_end_time)
            .when(pl.col("duration_type") == "distance")
            .then(pl.when(inside_d).then(pl.coalesce(model_t_d, lin_t_d)).otherwise(lin_t_d))
            .when(last_step)  # an open last step runs to the end of the activity
            .then(pl.col("last_t"))
            .alias("end_s"),
        )
        .with_columns(
            # planned amount not reached before the activity ended: truncated at its end
            pl.when(pl.col("end_s").is_null() & (pl.col("duration_type") != "open"))
            .then(pl.col("last_t"))
            .otherwise(pl.col("end_s"))
            .alias("end_s"),
            pl.when(pl.col("duration_type") == "time")
            .then(pl.col("timer_goal"))
            .when(pl.col("duration_type") == "distance")
            .then(timer_at_d)
            .alias("end_timer"),
            pl.when(pl.col("duration_type") == "time")
            .then(
                pl.when(inside)
                .then(pl.coalesce(model_distance, lin_distance))
                .otherwise(lin_distance)
            )
            .when(pl.col("duration_type") == "distance")
            .then(pl.col("distance_goal"))
            .alias("end_distance"),
        )
        .with_columns(
            # truncated or open-last steps: take the values at the end of the stream
            pl.col("end_timer").fill_null(pl.col("timer")),
            pl.col("end_distance").fill_null(pl.col("distance")),
        )
    )


def match_steps(
    pairs: pl.DataFrame,
    steps: pl.DataFrame,
    samples: pl.DataFrame,
    laps: pl.DataFrame,
    config: MatchConfig = MatchConfig(),
) -> pl.DataFrame:
    """One row per planned step of every matched session: where it was run and how well."""
    pairs = pairs.filter(pl.col("session_id").is_not_null())
    steps = steps.join(pairs.select("planned_session_id"), on="planned_session_id")
    from_laps = _lap_evidence(pairs, steps, laps)
    remaining = pairs.join(
        from_laps.select("planned_session_id").unique(), on="planned_session_id", how="anti"
    )
    spans = pl.concat([from_laps, _cut(remaining, steps, samples)]).join(
        steps, on=["planned_session_id", "step_index"]
    )
    tol = config.single_target_tolerance
    single = pl.col("target_low") == pl.col("target_high")
    targets = spans.with_columns(
        pl.when(single)
        .then(pl.col("target_low") * (1 - tol))
        .otherwise(pl.col("target_low"))
        .alias("target_low"),
        pl.when(single)
        .then(pl.col("target_high") * (1 + tol))
        .otherwise(pl.col("target_high"))
        .alias("target_high"),
        pl.concat_str("planned_session_id", pl.lit("#"), "session_id").alias("pair"),
    )
    measured = interval_metrics(
        # Only paired activities' samples: the rest (unplanned runs, other sports, athletes
        # without a plan) would otherwise be sorted and interpolated for nothing.
        samples.lazy().filter(pl.col("session_id").is_in(pairs["session_id"].unique().implode())),
        targets.lazy().select(
            pl.col("session_id"),
            pl.col("pair").alias("kind"),  # one kind per plan ↔ activity pair: no overlaps
            pl.col("step_index").alias("interval_index"),
            "start_s",
            "end_s",
            "target_type",
            "target_low",
            "target_high",
        ),
    ).collect()
    actual = targets.join(
        measured.rename({"kind": "pair", "interval_index": "step_index"}).drop("start_s", "end_s"),
        on=["session_id", "pair", "step_index"],
        how="left",
    )
    return actual.select(
        "planned_session_id",
        "session_id",
        "step_index",
        "evidence",
        "start_s",
        "end_s",
        pl.col("timer_s").alias("actual_duration_s"),
        pl.col("elapsed_s").alias("actual_elapsed_s"),
        pl.col("distance_m").alias("actual_distance_m"),
        pl.col("avg_speed_mps").alias("actual_speed_mps"),
        pl.col("avg_pace_s_per_km").alias("actual_pace_s_per_km"),
        pl.col("avg_hr").alias("actual_avg_hr"),
        "time_in_target_s",
        "start_interpolated",
        "end_interpolated",
        "target_low",
        "target_high",
    )


PLAN_INTERVAL_MATCH_COLUMNS = [
    "planned_session_id",
    "user_id",
    "step_index",
    "kind",
    "name",
    "matched",
    "session_id",
    "evidence",
    "start_time_utc",
    "end_time_utc",
    "duration_type",
    "planned_duration_s",
    "planned_distance_m",
    "target_type",
    "target_low",
    "target_high",
    "planned_pace_fast_s_per_km",
    "planned_pace_slow_s_per_km",
    "planned_pace_s_per_km",
    "actual_duration_s",
    "actual_elapsed_s",
    "actual_distance_m",
    "actual_speed_mps",
    "actual_pace_s_per_km",
    "actual_avg_hr",
    "time_in_target_s",
    "time_in_target_pct",
    "within_target",
    "compliance_pct",
    "start_interpolated",
    "end_interpolated",
]


def grade(compliance: pl.Expr, matched: pl.Expr, config: MatchConfig) -> pl.Expr:
    (g_lo, g_hi), (y_lo, y_hi) = config.green, config.yellow
    return (
        pl.when(~matched)
        .then(pl.lit("grey"))
        .when(compliance.is_between(g_lo, g_hi))
        .then(pl.lit("green"))
        .when(compliance.is_between(y_lo, y_hi))
        .then(pl.lit("yellow"))
        .otherwise(pl.lit("red"))
    )


def evaluate_plans(
    planned_sessions: pl.DataFrame,
    planned_steps: pl.DataFrame,
    sessions: pl.DataFrame,
    samples: pl.DataFrame,
    laps: pl.DataFrame,
    config: MatchConfig = MatchConfig(),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(plan_matches, plan_interval_matches) for every planned session."""
    pairs = match_sessions(planned_sessions, sessions, config)
    done = match_steps(pairs, planned_steps, samples, laps, config)
    tol = config.single_target_tolerance
    steps = planned_steps.join(
        planned_sessions.select("planned_session_id", "user_id"), on="planned_session_id"
    ).join(
        pairs.select("planned_session_id", pl.col("session_id").alias("matched_session")),
        on="planned_session_id",
        how="left",
    )
    rows = steps.join(
        done.drop("target_low", "target_high"),
        on=["planned_session_id", "step_index"],
        how="left",
    ).with_columns(
        pl.col("session_id").is_not_null().alias("matched"),
        pl.col("matched_session").alias("session_id"),
        pl.col("evidence").fill_null("none"),
    )
    speed_target = pl.col("target_type") == "speed"
    low = (
        pl.when(pl.col("target_low") == pl.col("target_high"))
        .then(pl.col("target_low") * (1 - tol))
        .otherwise(pl.col("target_low"))
    )
    high = (
        pl.when(pl.col("target_low") == pl.col("target_high"))
        .then(pl.col("target_high") * (1 + tol))
        .otherwise(pl.col("target_high"))
    )
    actual_value = (
        pl.when(speed_target)
        .then(pl.col("actual_speed_mps"))
        .when(pl.col("target_type") == "heart_rate")
        .then(pl.col("actual_avg_hr"))
    )
    rows = rows.with_columns(
        pl.from_epoch((pl.col("start_s") * 1e6).round().cast(pl.Int64), time_unit="us")
        .dt.replace_time_zone("UTC")
        .alias("start_time_utc"),
        pl.from_epoch((pl.col("end_s") * 1e6).round().cast(pl.Int64), time_unit="us")
        .dt.replace_time_zone("UTC")
        .alias("end_time_utc"),
        pl.when(speed_target)
        .then(1000.0 / pl.col("target_high"))
        .alias("planned_pace_fast_s_per_km"),
        pl.when(speed_target)
        .then(1000.0 / pl.col("target_low"))
        .alias("planned_pace_slow_s_per_km"),
        # the pace of the target range's middle speed
        pl.when(speed_target)
        .then(2000.0 / (pl.col("target_low") + pl.col("target_high")))
        .alias("planned_pace_s_per_km"),
        pl.when(pl.col("actual_duration_s") > 0)
        .then(100.0 * pl.col("time_in_target_s") / pl.col("actual_duration_s"))
        .alias("time_in_target_pct"),
        pl.when(pl.col("target_type").is_in(["speed", "heart_rate"]) & low.is_not_null())
        .then(actual_value.is_between(low, high))
        .alias("within_target"),
        pl.when(pl.col("duration_type") == "time")
        .then(100.0 * pl.col("actual_duration_s").fill_null(0.0) / pl.col("planned_duration_s"))
        .when(pl.col("duration_type") == "distance")
        .then(100.0 * pl.col("actual_distance_m").fill_null(0.0) / pl.col("planned_distance_m"))
        .alias("compliance_pct"),
    )
    # Session compliance: steps weighted by their planned size in seconds (distance steps by
    # the target speed, else the speed actually run); missing steps count as 0 %.
    mid_speed = (pl.col("target_low") + pl.col("target_high")) / 2
    weight = (
        pl.when(pl.col("duration_type") == "time")
        .then(pl.col("planned_duration_s"))
        .when(pl.col("duration_type") == "distance")
        .then(
            pl.col("planned_distance_m")
            / pl.coalesce(
                pl.when(speed_target).then(mid_speed), pl.col("actual_speed_mps"), pl.lit(3.0)
            )
        )
        .otherwise(0.0)
    )
    per_session = (
        rows.with_columns(weight.alias("w"))
        .group_by("planned_session_id")
        .agg(
            pl.col("matched").sum().cast(pl.Int64).alias("n_steps_matched"),
            pl.len().alias("n_steps"),
            (
                (pl.col("w") * pl.col("compliance_pct").fill_null(0.0).clip(0, 200)).sum()
                / pl.col("w").sum()
            ).alias("compliance_pct"),
            pl.col("evidence").filter(pl.col("matched")).mode().first().alias("evidence"),
        )
    )
    matched = pl.col("session_id").is_not_null()
    plan_matches = (
        planned_sessions.join(pairs, on="planned_session_id", how="left")
        .join(per_session, on="planned_session_id", how="left")
        .with_columns(
            pl.when(~matched)
            .then(None)
            .otherwise(pl.col("compliance_pct"))
            .alias("compliance_pct"),
        )
        .with_columns(
            pl.when(~matched)
            .then(pl.lit("missed"))
            .when(
                (pl.col("n_steps_matched") >= config.completed_step_share * pl.col("n_steps"))
                & (pl.col("compliance_pct").fill_null(100.0) >= config.yellow[0])
            )
            .then(pl.lit("completed"))
            .otherwise(pl.lit("partial"))
            .alias("status"),
            grade(pl.col("compliance_pct").fill_null(100.0), matched, config).alias("grade"),
        )
        .select(
            "planned_session_id",
            "user_id",
            "planned_date",
            "sport",
            "name",
            "plan_id",
            "source",
            "session_id",
            "status",
            "compliance_pct",
            "grade",
            "day_offset",
            pl.col("n_steps").fill_null(pl.col("n_steps")),
            "n_steps_matched",
            "evidence",
            "planned_duration_s",
            "planned_distance_m",
        )
        .sort("user_id", "planned_date", "planned_session_id")
    )
    return plan_matches, rows.select(PLAN_INTERVAL_MATCH_COLUMNS).sort(
        "planned_session_id", "step_index"
    )
