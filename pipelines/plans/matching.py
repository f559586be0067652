"""Planned sessions matched to activities, planned steps to stretches of those activities.

Session matching: a planned session goes to at most one activity of its user, of the same
sport family, whose local date is within ``tolerance_days`` of the planned date; among
candidates the one closest in date and then in size (duration, else distance) wins, each
activity serving at most one plan.

Step matching uses the best evidence the activity has:
1. ``wkt_step_index`` laps — the watch ran the workout: runs of laps with one step index, in
   order, are the steps;
2. manual laps — as many laps as planned steps, not auto-laps (every 1 km/mile splits), and
   fitting the structure: measured, their work laps must have the confidence of found steps
   (size near plan, faster than their neighbours, near their target); laps that don't fit
   (the lap button pressed only now and then) fall through to detection;
3. ``detected`` — the planned steps aligned to where the signal changes (``detect.py``).
All three give boundary instants; every metric then comes from the intervals module, and
every step gets a confidence from what was measured (size against plan, level against its
neighbours). A detected session whose work steps can't be found with confidence is
``unstructured``: run, but not the planned workout; no step is matched in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from pipelines.intervals import interval_metrics
from pipelines.plans.detect import DetectConfig, detect_steps
from pipelines.plans.model import planned_step_seconds


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
    # a step counts as found at this confidence; a detected session whose work steps average
    # below ``unstructured_below`` is unstructured (run, but not the planned workout)
    min_step_confidence: float = 0.5
    unstructured_below: float = 0.5
    # a step with a target is fully compliant when this share of its time was in the target
    target_time_share: float = 0.7
    # a work step counts as run off target below this share of time in the target
    off_target_share: float = 0.5
    detect: DetectConfig = field(default_factory=DetectConfig)


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
    detected = detect_steps(remaining, steps, samples, laps, config.detect)
    measured = _measure(pl.concat([from_laps, detected]), steps, samples, pairs, config)
    # Manual laps count when they fit the structure (the lap button pressed at every step);
    # pressed only now and then, their work laps are not the work: detection decides instead.
    misfit = (
        measured.filter(pl.col("evidence") == "manual_laps", pl.col("kind") == "work")
        .group_by("planned_session_id")
        .agg(pl.col("confidence").mean())
        .filter(pl.col("confidence") < config.min_step_confidence)
        .select("planned_session_id")
    )
    if misfit.height:
        again = detect_steps(
            pairs.join(misfit, on="planned_session_id", how="semi"),
            steps,
            samples,
            laps,
            config.detect,
        )
        measured = pl.concat(
            [
                measured.join(misfit, on="planned_session_id", how="anti"),
                _measure(again, steps, samples, pairs, config),
            ]
        )
    return measured


def _measure(
    spans: pl.DataFrame,
    steps: pl.DataFrame,
    samples: pl.DataFrame,
    pairs: pl.DataFrame,
    config: MatchConfig,
) -> pl.DataFrame:
    """Every span measured by the intervals module at its exact boundaries, with the step's
    confidence."""
    spans = spans.join(steps, on=["planned_session_id", "step_index"])
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
    return _with_confidence(actual).select(
        "planned_session_id",
        "session_id",
        "step_index",
        "kind",
        "evidence",
        "confidence",
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


def _timed(timer: pl.Expr, elapsed: pl.Expr) -> pl.Expr:
    """How long a time step lasted: timer time, but clock time for recoveries and rests (a
    stood rest often stops the timer; the plan's 90 s rest is 90 s on the clock)."""
    return pl.when(pl.col("kind").is_in(["recovery", "rest"])).then(elapsed).otherwise(timer)


def _with_confidence(actual: pl.DataFrame) -> pl.DataFrame:
    """Per step, 0–1: how close its measured size is to the plan (work steps tightly, others
    loosely, open steps always), times for work steps how clearly it was faster than the
    non-work steps beside it (by half the contrast the targets ask for; 15 % when no step has
    a speed target) and how near it came to its speed target. Steps the watch ran as a
    workout (``wkt_step_index``) are certain."""
    work = pl.col("kind") == "work"
    ratio = (
        pl.when(pl.col("duration_type") == "time")
        .then(
            (_timed(pl.col("timer_s"), pl.col("elapsed_s")) + 10)
            / (pl.col("planned_duration_s") + 10)
        )
        .when(pl.col("duration_type") == "distance")
        .then((pl.col("distance_m") + 10) / (pl.col("planned_distance_m") + 10))
    )
    sigma = pl.when(work).then(0.25).otherwise(0.6)
    size = (-(ratio.log() ** 2) / (2 * sigma**2)).exp().fill_null(1.0)
    mid = (pl.col("target_low") + pl.col("target_high")) / 2
    speed_mid = pl.when(pl.col("target_type") == "speed").then(mid)
    order = ["pair"]
    easy = pl.when(~work).then(pl.col("avg_speed_mps"))
    easy_mid = pl.when(~work).then(speed_mid)
    neighbours = pl.mean_horizontal(easy.shift(1).over(order), easy.shift(-1).over(order))
    neighbour_mid = pl.mean_horizontal(
        easy_mid.shift(1).over(order), easy_mid.shift(-1).over(order)
    )
    # The contrast the plan asks for: from the targets when both sides have one; none when
    # only the work step has one (its pace is checked against the target instead: a steady
    # run's warm-up may be as fast); 30 % when neither has (the contrast is all there is).
    expected = (
        pl.when(speed_mid.is_not_null())
        .then(speed_mid / neighbour_mid)
        .otherwise(pl.lit(1.3))
        .fill_null(1.0)
    )
    contrast = (
        pl.when(work & neighbours.is_not_null() & (expected > 1.04))
        .then(((pl.col("avg_speed_mps") / neighbours - 1) / (0.5 * (expected - 1))).clip(0.0, 1.0))
        .otherwise(1.0)
        .fill_null(0.0)
    )
    # A work step run far slower than its speed target is not that step (an easy run on an
    # interval day): 40 % below the target's low end counts as nothing.
    shortfall = (
        pl.when(work & (pl.col("target_type") == "speed") & (pl.col("target_low") > 0))
        .then((1 - pl.col("avg_speed_mps") / pl.col("target_low")).clip(0.0, None))
        .otherwise(0.0)
        .fill_null(0.0)
    )
    pace = (1 - shortfall / 0.4).clip(0.0, 1.0)
    return actual.sort("pair", "step_index").with_columns(
        pl.when(pl.col("evidence") == "wkt_step_index")
        .then(1.0)
        .otherwise(size * contrast * pace)
        .alias("confidence")
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
    "confidence",
    "deviation_s",
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
    "off_target",
    "size_compliance_pct",
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


def _outside(value: pl.Expr, low: pl.Expr, high: pl.Expr) -> pl.Expr:
    """How far ``value`` lies outside [low, high], relative to the edge it missed."""
    return (
        pl.when(value < low)
        .then((low - value) / low)
        .when(value > high)
        .then((value - high) / high)
        .otherwise(0.0)
    )


def _planned_offsets(steps: pl.DataFrame) -> pl.DataFrame:
    """Per step, when it would start if the plan were run to the second from the activity's
    first sample (distance steps at their target's middle speed, else a typical speed for the
    sport; null after an open step)."""
    seconds = planned_step_seconds()
    return steps.sort("planned_session_id", "step_index").select(
        "planned_session_id",
        "step_index",
        (seconds.cum_sum().over("planned_session_id") - seconds).alias("planned_offset_s"),
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
    firsts = samples.group_by("session_id").agg(pl.col("t_s").min().alias("first_s"))
    # Detected sessions whose work steps can't be found with confidence ran something else:
    # their steps are not matched (no fabricated match), the session is unstructured.
    work_confidence = (
        planned_steps.filter(pl.col("kind") == "work")
        .join(pairs.select("planned_session_id", "session_id"), on="planned_session_id")
        .join(
            done.select("planned_session_id", "step_index", "confidence"),
            on=["planned_session_id", "step_index"],
            how="left",
        )
        .group_by("planned_session_id")
        .agg(pl.col("confidence").fill_null(0.0).mean().alias("work_confidence"))
    )
    detected = done.filter(pl.col("evidence") == "detected").select("planned_session_id").unique()
    unstructured = (
        work_confidence.join(detected, on="planned_session_id", how="semi")
        .filter(pl.col("work_confidence") < config.unstructured_below)
        .select("planned_session_id")
    )
    done = done.join(unstructured, on="planned_session_id", how="anti")
    tol = config.single_target_tolerance
    steps = (
        planned_steps.join(
            planned_sessions.select("planned_session_id", "user_id"), on="planned_session_id"
        )
        .join(
            pairs.select("planned_session_id", pl.col("session_id").alias("matched_session")),
            on="planned_session_id",
            how="left",
        )
        .join(_planned_offsets(planned_steps), on=["planned_session_id", "step_index"])
    )
    rows = (
        steps.join(
            done.drop("target_low", "target_high", "kind"),
            on=["planned_session_id", "step_index"],
            how="left",
        )
        .join(firsts, left_on="matched_session", right_on="session_id", how="left")
        .with_columns(
            pl.col("session_id").is_not_null().alias("matched"),
            pl.col("matched_session").alias("session_id"),
            pl.col("evidence").fill_null("none"),
            (pl.col("start_s") - pl.col("first_s") - pl.col("planned_offset_s")).alias(
                "deviation_s"
            ),
        )
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
    has_target = pl.col("target_type").is_in(["speed", "heart_rate"]) & low.is_not_null()
    in_target_pct = (
        pl.when(pl.col("actual_duration_s") > 0)
        .then(100.0 * pl.col("time_in_target_s") / pl.col("actual_duration_s"))
        .alias("time_in_target_pct")
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
        in_target_pct,
        pl.when(has_target).then(actual_value.is_between(low, high)).alias("within_target"),
        pl.when(pl.col("duration_type") == "time")
        .then(
            100.0
            * _timed(pl.col("actual_duration_s"), pl.col("actual_elapsed_s")).fill_null(0.0)
            / pl.col("planned_duration_s")
        )
        .when(pl.col("duration_type") == "distance")
        .then(100.0 * pl.col("actual_distance_m").fill_null(0.0) / pl.col("planned_distance_m"))
        .alias("size_compliance_pct"),
    ).with_columns(
        # Run off target: the average outside the range and less than ``off_target_share``
        # of the time inside it (either alone is too strict for GPS pace on short reps).
        pl.when(has_target & pl.col("matched"))
        .then(
            ~pl.col("within_target").fill_null(False)
            & (pl.col("time_in_target_pct").fill_null(0.0) < 100 * config.off_target_share)
        )
        .alias("off_target"),
        # Size compliance, scaled down for a step run off its target: by the better of the
        # time in target (``target_time_share`` of it counts as fully) and how far the
        # average missed the range (10 % outside counts as not at all).
        (
            pl.col("size_compliance_pct")
            * pl.when(has_target & pl.col("matched") & ~pl.col("within_target").fill_null(False))
            .then(
                pl.max_horizontal(
                    (
                        pl.col("time_in_target_pct").fill_null(0.0)
                        / (100 * config.target_time_share)
                    ).clip(0.0, 1.0),
                    (1 - _outside(actual_value, low, high) / 0.1).clip(0.0, 1.0).fill_null(0.0),
                )
            )
            .otherwise(1.0)
        ).alias("compliance_pct"),
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
    is_work = pl.col("kind") == "work"
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
            is_work.sum().cast(pl.Int64).alias("work_steps_planned"),
            (is_work & pl.col("matched") & (pl.col("confidence") >= config.min_step_confidence))
            .sum()
            .cast(pl.Int64)
            .alias("work_steps_found"),
            (is_work & pl.col("off_target").fill_null(False))
            .sum()
            .cast(pl.Int64)
            .alias("work_steps_off_target"),
            # Work steps run short of their planned size by more than green allows.
            (is_work & (pl.col("size_compliance_pct") < config.green[0]))
            .sum()
            .cast(pl.Int64)
            .alias("work_steps_short"),
        )
    )
    matched = pl.col("session_id").is_not_null()
    is_unstructured = pl.col("planned_session_id").is_in(
        unstructured["planned_session_id"].implode()
    )
    base_grade = grade(pl.col("compliance_pct").fill_null(100.0), matched, config)
    # Green means the workout was run: every work step found, none off target, none cut short.
    work_shortfall = (
        (pl.col("work_steps_found") < pl.col("work_steps_planned"))
        | (pl.col("work_steps_off_target") > 0)
        | (pl.col("work_steps_short") > 0)
    )
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
            .when(is_unstructured)
            .then(pl.lit("unstructured"))
            .when(
                (pl.col("n_steps_matched") >= config.completed_step_share * pl.col("n_steps"))
                & (pl.col("compliance_pct").fill_null(100.0) >= config.yellow[0])
            )
            .then(pl.lit("completed"))
            .otherwise(pl.lit("partial"))
            .alias("status"),
            pl.when(matched & is_unstructured)
            .then(pl.lit("red"))
            .when((base_grade == "green") & work_shortfall)
            .then(pl.lit("yellow"))
            .otherwise(base_grade)
            .alias("grade"),
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
            "work_steps_planned",
            "work_steps_found",
            "work_steps_off_target",
            "work_steps_short",
            "evidence",
            "planned_duration_s",
            "planned_distance_m",
        )
        .sort("user_id", "planned_date", "planned_session_id")
    )
    return plan_matches, rows.select(PLAN_INTERVAL_MATCH_COLUMNS).sort(
        "planned_session_id", "step_index"
    )
