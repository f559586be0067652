"""Frozen oracle: the interval alignment as one Polars lazy query, as it was before the numpy
rewrite (pipelines/intervals/alignment.py at commit 9148788; kept in the speed benchmark until
issue #16 moved it here). Test code only: tests/test_intervals.py compares the product with
it on randomized sessions. Do not change it."""

from __future__ import annotations


def previous_implementation():
    """``(clean_samples, interval_metrics, interpolate_at)`` as they were before the numpy
    rewrite: a frozen copy of pipelines/intervals/alignment.py at commit 9148788 (Polars lazy:
    sort per (session, kind) stream, ``join_asof`` at the boundaries, boundaries
    ``merge_sorted`` into the sample stream, per-interval ``group_by``). The ``lead_previous``
    method timed it beside the numpy module until issue #16; tests/test_intervals.py compares
    the two."""
    import polars as pl

    from pipelines.intervals.grouped import KEY, bfill, cumsum, ffill, int_key, next_, prev

    CUMULATIVE = ("distance_m", "timer_s", "elevation_m")
    HELD = ("hr_bpm", "speed_mps", "cadence", "power_w")
    SAMPLE_COLUMNS = ("session_id", "t_s", *CUMULATIVE, *HELD)
    TARGET_COLUMNS = ("target_type", "target_low", "target_high")
    GROUP = "_group"
    RESET_TOLERANCE_M = 1.0
    RAMP_WIDTH_SHARE = 0.5
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

    def _prev_ensure_columns(samples: pl.LazyFrame) -> pl.LazyFrame:
        present = samples.collect_schema().names()
        missing = [pl.lit(None, pl.Float64).alias(c) for c in SAMPLE_COLUMNS if c not in present]
        # Other columns (positions, …) ride along untouched.
        return samples.with_columns(missing).with_columns(
            [pl.col(c).cast(pl.Float64) for c in SAMPLE_COLUMNS[1:]]
        )

    def previous_clean_samples(samples: pl.LazyFrame) -> pl.LazyFrame:
        """Sorted, de-duplicated samples with distance resets undone and indoor distance filled.

        - out-of-order samples are sorted; several samples at one instant keep the last one;
        - a cumulative distance that drops (device reset, new FIT section) is re-based so it keeps
          rising;
        - a session with no distance at all but speed gets distance by integrating the held speed.
        """
        ordered = (
            _prev_ensure_columns(samples)
            .filter(pl.col("t_s").is_not_null())
            .with_columns(int_key("session_id").alias(KEY))
            .sort(KEY, "t_s", maintain_order=True)
        )
        # Several samples at one instant: keep the last one delivered.
        duplicate = (pl.col(KEY) == pl.col(KEY).shift(-1)) & (
            pl.col("t_s") == pl.col("t_s").shift(-1)
        )
        ordered = ordered.filter(~duplicate.fill_null(False))
        previous = prev(ffill(pl.col("distance_m")))
        # After a reset the odometer counts from zero again: continue from the last reading.
        reset = (pl.col("distance_m") - previous) < -RESET_TOLERANCE_M
        rebased = pl.col("distance_m") + cumsum(pl.when(reset).then(previous).otherwise(0.0))
        integrated = cumsum(
            prev(pl.col("speed_mps")).fill_null(0.0) * (pl.col("t_s") - prev(pl.col("t_s")))
        )
        has_distance = pl.col("distance_m").is_not_null().any().over(KEY)
        has_speed = pl.col("speed_mps").is_not_null().any().over(KEY)
        return ordered.with_columns(
            pl.when(has_distance)
            .then(rebased)
            .when(has_speed)
            .then(integrated)
            .otherwise(None)
            .alias("distance_m"),
        ).drop(KEY)

    def _prev_with_valid_neighbours(samples: pl.LazyFrame, key: str = KEY) -> pl.LazyFrame:
        """For each cumulative column: the last valid (time, value) at or before each sample and the
        first valid one at or after it, so gaps in one column (GPS loss) don't poison the others.
        ``samples`` must be sorted by (key, t_s)."""
        exprs = []
        for c in CUMULATIVE:
            valid_t = pl.when(pl.col(c).is_not_null()).then(pl.col("t_s"))
            exprs += [
                ffill(valid_t, key).alias(f"{c}__lo_t"),
                ffill(pl.col(c), key).alias(f"{c}__lo"),
                bfill(valid_t, key).alias(f"{c}__hi_t"),
                bfill(pl.col(c), key).alias(f"{c}__hi"),
            ]
        # Device speed where distance is valid: the slopes for the speed-aware distance estimate.
        speed_there = pl.when(pl.col("distance_m").is_not_null()).then(
            pl.col("speed_mps").clip(lower_bound=0.0)
        )
        exprs += [
            ffill(speed_there, key).alias("distance_m__lo_v"),
            bfill(speed_there, key).alias("distance_m__hi_v"),
        ]
        return samples.with_columns(exprs)

    def _prev_speed_ramp_fraction(
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
        ramp = (
            pl.when(width > 0).then((v1 - v0) * into_ramp * into_ramp / (2 * width)).otherwise(0.0)
        )
        covered = (
            v0 * pl.min_horizontal(f, ramp_start)
            + v0 * into_ramp
            + ramp
            + v1 * (f - ramp_start - width).clip(lower_bound=0.0)
        )
        return pl.when(explains).then(covered / secant).otherwise(f)

    def _prev_at_instants(prepared: pl.LazyFrame, left: pl.LazyFrame, key: str) -> pl.LazyFrame:
        """:func:`interpolate_at` on samples already keyed, sorted by (key, t_s) and given their
        valid neighbours; ``left`` (the instants) sorted by (key, t_s) too."""
        prepared = prepared.with_columns(pl.col("t_s").alias("sample_t"))
        before = prepared.select(
            key,
            "t_s",
            pl.col("sample_t").alias("prev_t"),
            *[pl.col(f"{c}__lo_t") for c in CUMULATIVE],
            *[pl.col(f"{c}__lo") for c in CUMULATIVE],
            pl.col("distance_m__lo_v"),
            *[pl.col(c).alias(f"{c}__held") for c in HELD],
        )
        after = prepared.select(
            key,
            "t_s",
            pl.col("sample_t").alias("next_t"),
            *[pl.col(f"{c}__hi_t") for c in CUMULATIVE],
            *[pl.col(f"{c}__hi") for c in CUMULATIVE],
            pl.col("distance_m__hi_v"),
        )
        joined = left.join_asof(
            before, on="t_s", by=key, strategy="backward", check_sortedness=False
        ).join_asof(after, on="t_s", by=key, strategy="forward", check_sortedness=False)
        t = pl.col("t_s")
        values = []
        for c in CUMULATIVE:
            lo_t, lo, hi_t, hi = (pl.col(f"{c}__{x}") for x in ("lo_t", "lo", "hi_t", "hi"))
            fraction = (t - lo_t) / (hi_t - lo_t)
            if c == "distance_m":
                fraction = _prev_speed_ramp_fraction(
                    fraction,
                    pl.col("distance_m__lo_v"),
                    pl.col("distance_m__hi_v"),
                    (hi - lo) / (hi_t - lo_t),
                )
            values.append(
                pl.when(lo.is_null())
                .then(hi)
                .when(hi.is_null() | (hi_t == lo_t))
                .then(lo)
                .otherwise(lo + (hi - lo) * fraction)
                .alias(c)
            )
        values += [pl.col(f"{c}__held").alias(c) for c in HELD]
        exact = (pl.col("prev_t") == t) | (pl.col("next_t") == t)
        return joined.with_columns(
            *values,
            (~exact.fill_null(False)).alias("interpolated"),
            (pl.col("prev_t").is_null() | pl.col("next_t").is_null()).alias("out_of_range"),
            (pl.col("next_t") - pl.col("prev_t")).alias("bracket_gap_s"),
        ).drop(
            [f"{c}__{x}" for c in CUMULATIVE for x in ("lo_t", "lo", "hi_t", "hi")]
            + [f"{c}__held" for c in HELD]
            + ["distance_m__lo_v", "distance_m__hi_v"]
        )

    def previous_interval_metrics(
        samples: pl.LazyFrame,
        intervals: pl.LazyFrame,
        gap_threshold_s: float = 10.0,
    ) -> pl.LazyFrame:
        """Per interval: exact-boundary distance/timer/elapsed, time-weighted averages, quality.

        ``samples`` should come from :func:`clean_samples`. Intervals of one ``kind`` must not
        overlap within a session (laps, workout steps); different kinds may.
        """
        # Optional targets (plan steps): time inside [target_low, target_high] of speed or HR.
        has_targets = set(TARGET_COLUMNS) <= set(intervals.collect_schema().names())
        # One integer per (session, kind): everything below sorts, joins and groups on it.
        group = (int_key("session_id") * (1 << 32) + int_key("kind")).alias(GROUP)
        spans = intervals.select(
            "session_id",
            "kind",
            "interval_index",
            pl.col("start_s").cast(pl.Float64),
            pl.col("end_s").cast(pl.Float64),
            *([pl.col(c) for c in TARGET_COLUMNS] if has_targets else []),
        ).with_columns(group)
        # Samples once per (session, kind) stream they serve, sorted (a cheap pass when
        # clean_samples already sorted them), with each cumulative column's valid neighbours.
        groups = spans.select(int_key("session_id").alias(KEY), GROUP).unique()
        prepared = _prev_with_valid_neighbours(
            _prev_ensure_columns(samples)
            .with_columns(int_key("session_id").alias(KEY))
            .join(groups, on=KEY)
            .sort(GROUP, "t_s"),
            GROUP,
        )
        points = (
            pl.concat(
                [
                    spans.select(GROUP, pl.col("start_s").alias("t_s")),
                    spans.select(GROUP, pl.col("end_s").alias("t_s")),
                ]
            )
            .unique()
            .sort(GROUP, "t_s")
        )
        at_bounds = _prev_at_instants(prepared, points, GROUP)

        # The sample stream, split at every boundary: each segment [t, t_next) then lies inside one
        # interval and carries the values that hold over it. Both sides are sorted by (GROUP, t_s):
        # a linear merge (samples before a boundary at the same instant), no sort.
        columns = [GROUP, "t_s", *CUMULATIVE, *HELD, "is_boundary", "bracket_gap_s"]
        sample_rows = prepared.with_columns(
            pl.lit(False).alias("is_boundary"),
            pl.lit(None, pl.Float64).alias("bracket_gap_s"),
        ).select(columns)
        boundary_rows = at_bounds.with_columns(pl.lit(True).alias("is_boundary")).select(columns)
        stream = sample_rows.merge_sorted(boundary_rows, key=[GROUP, "t_s"], maintain_order=True)

        def step(column: str) -> pl.Expr:
            return next_(pl.col(column), GROUP) - pl.col(column)

        real_t = pl.when(~pl.col("is_boundary")).then(pl.col("t_s"))
        stream = stream.with_columns(
            step("t_s").alias("dt"),
            step("timer_s").alias("dtimer"),
            step("elevation_m").alias("delev"),
            step("distance_m").alias("ddist"),
            bfill(next_(real_t, GROUP), GROUP).alias("next_real_t"),
        ).with_columns(
            pl.when(pl.col("is_boundary"))
            .then(pl.col("bracket_gap_s"))
            .otherwise(pl.col("next_real_t") - pl.col("t_s"))
            .alias("gap_s"),
        )
        # An expression sort, not a sort node: Polars 2.1's streaming engine panics on a join_asof
        # between a merge_sorted frame and a sorted one.
        assigned = stream.join_asof(
            spans.drop("session_id", "kind").select(pl.all().sort_by(GROUP, "start_s")),
            left_on="t_s",
            right_on="start_s",
            by=GROUP,
            strategy="backward",
            check_sortedness=False,
        ).filter(pl.col("t_s") < pl.col("end_s"))

        dt = pl.col("dt").fill_null(0.0)

        def time_in_target(dt: pl.Expr, paused: pl.Expr) -> pl.Expr:
            # Speed over a segment: the device's (held) speed, else distance covered / time.
            speed = pl.coalesce(
                "speed_mps", pl.when(pl.col("dt") > 0).then(pl.col("ddist") / pl.col("dt"))
            )
            value = (
                pl.when(pl.col("target_type") == "speed")
                .then(speed)
                .when(pl.col("target_type") == "heart_rate")
                .then(pl.col("hr_bpm"))
            )
            inside = value.is_between(pl.col("target_low"), pl.col("target_high")).fill_null(False)
            return pl.when(inside).then(dt - paused).otherwise(0.0).sum().alias("time_in_target_s")

        def weighted(column: str) -> pl.Expr:
            present = pl.col(column).is_not_null()
            weight = pl.when(present).then(dt).otherwise(0.0).sum()
            return pl.when(weight > 0).then((pl.col(column) * dt).sum() / weight)

        paused = (dt - pl.col("dtimer")).clip(lower_bound=0.0)
        # A pause is a run of segments where the timer (mostly) stood still; count run starts.
        in_pause = (paused > 0.5 * dt) & (dt > 0)
        stats = assigned.group_by(GROUP, "interval_index").agg(
            weighted("hr_bpm").alias("avg_hr"),
            pl.col("hr_bpm").max().alias("max_hr"),
            weighted("cadence").alias("avg_cadence"),
            weighted("power_w").alias("avg_power_w"),
            pl.col("power_w").max().alias("max_power_w"),
            pl.col("delev").clip(lower_bound=0.0).sum().alias("elevation_gain_m"),
            (-pl.col("delev").clip(upper_bound=0.0)).sum().alias("elevation_loss_m"),
            pl.col("gap_s").max().alias("max_gap_s"),
            ((pl.col("gap_s") > gap_threshold_s) & ~pl.col("is_boundary")).sum().alias("gap_count"),
            (in_pause & ~in_pause.shift(1, fill_value=False)).sum().alias("pause_count"),
            paused.sum().alias("paused_s"),
            (~pl.col("is_boundary")).sum().alias("n_samples"),
            *([time_in_target(dt, paused)] if has_targets else []),
        )

        bound_values = at_bounds.select(GROUP, "t_s", *CUMULATIVE, "interpolated", "out_of_range")
        renamed = (*CUMULATIVE, "interpolated", "out_of_range")
        start = bound_values.rename({c: f"start_{c}" for c in renamed} | {"t_s": "start_s"})
        end = bound_values.rename({c: f"end_{c}" for c in renamed} | {"t_s": "end_s"})
        elapsed = pl.col("end_s") - pl.col("start_s")
        timer = pl.col("end_timer_s") - pl.col("start_timer_s")
        distance = pl.col("end_distance_m") - pl.col("start_distance_m")
        return (
            spans.join(start, on=[GROUP, "start_s"], how="left")
            .join(end, on=[GROUP, "end_s"], how="left")
            .join(stats, on=[GROUP, "interval_index"], how="left")
            .with_columns(
                elapsed.alias("elapsed_s"),
                pl.coalesce(timer, elapsed).alias("timer_s"),
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
                pl.col("start_interpolated").fill_null(True),
                pl.col("end_interpolated").fill_null(True),
                pl.col("start_out_of_range").fill_null(True),
                pl.col("end_out_of_range").fill_null(True),
                pl.col("n_samples").fill_null(0),
                pl.col("gap_count").fill_null(0),
                pl.col("pause_count").fill_null(0),
            )
            .select(INTERVAL_COLUMNS + (["time_in_target_s"] if has_targets else []))
            .sort("session_id", "kind", "interval_index")
        )

    def previous_interpolate_at(samples: pl.LazyFrame, instants: pl.LazyFrame) -> pl.LazyFrame:
        prepared = _prev_with_valid_neighbours(
            _prev_ensure_columns(samples)
            .with_columns(int_key("session_id").alias(KEY))
            .sort(KEY, "t_s")
        )
        left = instants.with_columns(int_key("session_id").alias(KEY)).sort(KEY, "t_s")
        return _prev_at_instants(prepared, left, KEY).drop(KEY)

    return previous_clean_samples, previous_interval_metrics, previous_interpolate_at
