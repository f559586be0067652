"""FIT bronze → the silver activity model.

A file can hold several sessions (multisport, chained files); records, laps and timer events
are assigned to the session whose time span contains them. A damaged file without session
messages still yields one session spanning its records.
"""

from __future__ import annotations

import polars as pl

from pipelines.activities.model import (
    BOUND_SCHEMA,
    SAMPLE_SCHEMA,
    SESSION_SCHEMA,
    conform,
    session_id_expr,
)


def _epoch_s(column: str) -> pl.Expr:
    return pl.col(column).dt.epoch("ms") / 1000.0


# The FIT file of a chained file a message is in (bronze written before the column: 0).
CHAIN = pl.col("chain_index").fill_null(0).alias("chain_index")


def _session_spans(files: pl.LazyFrame, sessions: pl.LazyFrame, records: pl.LazyFrame):
    """One row per session with start/end epoch seconds; synthesized where none decoded.
    ``superseded``: the same activity is in a newer file (same session_id), which wins; the
    row stays so that this file's messages find their session and are dropped with it."""
    declared = sessions.with_columns(
        CHAIN,
        _epoch_s("start_time_utc").alias("start_s"),
        pl.coalesce(
            _epoch_s("start_time_utc") + pl.col("total_elapsed_time_s"), _epoch_s("end_time_utc")
        ).alias("end_s"),
        pl.lit(None, pl.String).alias("synthesized"),
    ).filter(pl.col("start_s").is_not_null())
    with_sessions = declared.select("source_sha256").unique()
    synthesized = (
        records.join(with_sessions, on="source_sha256", how="anti")
        .with_columns(CHAIN)
        .group_by("source_sha256", "user_id", "chain_index")
        .agg(
            _epoch_s("time_utc").min().alias("start_s"),
            _epoch_s("time_utc").max().alias("end_s"),
            pl.len().alias("n"),
        )
        .filter(pl.col("n") > 1)
        .with_columns(
            # One per FIT file of a chain (0 for a plain file): distinct session ids.
            pl.col("chain_index").alias("session_index"),
            pl.from_epoch((pl.col("start_s") * 1000).cast(pl.Int64), time_unit="ms")
            .dt.replace_time_zone("UTC")
            .alias("start_time_utc"),
            (pl.col("end_s") - pl.col("start_s")).alias("total_elapsed_time_s"),
            pl.lit("no session message; spans the records").alias("synthesized"),
        )
        .drop("n")
    )
    spans = pl.concat([declared, synthesized], how="diagonal_relaxed")
    fit_key = pl.concat_str(
        "user_id",
        pl.lit("|fit:"),
        pl.col("start_s").round(3).cast(pl.String),
        pl.lit(":"),
        pl.col("session_index").cast(pl.String),
    )
    # A file an activityFiles ping linked to an activityId is that activity: same key as the
    # Garmin API session (pipelines.activities.from_garmin), hence the same session_id.
    activity_key = pl.concat_str(
        "user_id", pl.lit("|activity:"), pl.col("activity_id").cast(pl.String)
    )
    single = pl.len().over("source_sha256") == 1
    return (
        spans.join(
            files.select(
                "source_sha256",
                "manufacturer",
                "product",
                "utc_offset_s",
                "integrity",
                "time_base",
                "activity_id",
            ),
            on="source_sha256",
            how="left",
        )
        .with_columns(
            session_id_expr(
                pl.when(pl.col("activity_id").is_not_null() & single)
                .then(activity_key)
                .otherwise(fit_key)
            ).alias("session_id"),
            pl.when(single).then(pl.col("activity_id")).alias("activity_id"),
        )
        # The same activity exported twice (different bytes): the newest file wins.
        .sort("received_at", "source_sha256", "chain_index", "session_index")
        .with_columns(
            (pl.int_range(pl.len()).over("session_id") < pl.len().over("session_id") - 1).alias(
                "superseded"
            )
        )
    )


def _assign(
    rows: pl.LazyFrame, spans: pl.LazyFrame, time_column: str, keep_superseded: bool = False
) -> pl.LazyFrame:
    """Attach each row to the session of its file (and FIT file of a chain: two chained
    activities may overlap in time) whose span contains it; rows of superseded sessions
    (the activity is in a newer file) are dropped, or kept with ``superseded`` set."""
    # A total order: sessions of one file starting at the same instant must get the same rows
    # whichever other files are read with them.
    keyed = spans.select(
        "source_sha256", "chain_index", "session_id", "start_s", "end_s", "superseded"
    )
    # A FIT file of a chain without sessions of its own (its session messages in another FIT
    # file of the chain) falls back to every session of the file: chain -1 matches them all.
    own = keyed.select("source_sha256", "chain_index").unique().with_columns(_own=pl.lit(True))
    keyed = pl.concat([keyed, keyed.with_columns(pl.lit(-1, pl.Int64).alias("chain_index"))])
    return (
        rows.with_columns(_epoch_s(time_column).alias("t_s"), CHAIN)
        .filter(pl.col("t_s").is_not_null())
        .join(own, on=["source_sha256", "chain_index"], how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("_own")).then("chain_index").otherwise(-1).alias("chain_index")
        )
        .drop("_own")
        # Stable: rows at one instant keep the file's order (the last one delivered wins).
        .sort("t_s", maintain_order=True)
        .join_asof(
            keyed.sort("start_s", "session_id"),
            left_on="t_s",
            right_on="start_s",
            by=["source_sha256", "chain_index"],
            strategy="backward",
            check_sortedness=False,
        )
        .filter(
            pl.col("session_id").is_not_null()
            & (pl.col("t_s") <= pl.col("end_s") + 1.0)
            & (pl.lit(keep_superseded) | ~pl.col("superseded"))
        )
        .drop([] if keep_superseded else ["superseded"])
    )


# Timer event types that stop the timer (``start`` starts it; others, e.g. markers, leave it).
TIMER_STOPS = ("stop", "stop_all", "stop_disable", "stop_disable_all")
FILE_KEY = ["source_sha256", "chain_index"]


def _file_timer(events: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The timer of each FIT file (of a chain) as a step function of time: one row per timer
    event with the timer reading there (``timer_at_event``, relative to the file's first timer
    event) and whether it runs after it; and per file its first event and whether the timer
    ran before it (it did unless that event starts it: watches often start without an
    event). The timer runs across sessions: a multisport file has one start and one
    ``stop_all`` for all its sessions."""
    state = (
        pl.when(pl.col("event_type") == "start")
        .then(True)
        .when(pl.col("event_type").is_in(TIMER_STOPS))
        .then(False)
    )
    steps = (
        events.filter(pl.col("event") == "timer")
        .with_columns(CHAIN, _epoch_s("time_utc").alias("event_t"), state.alias("running"))
        .filter(pl.col("event_t").is_not_null() & pl.col("running").is_not_null())
        # Stable: events at one instant keep the file's order (the last one is in force).
        .sort(*FILE_KEY, "event_t", maintain_order=True)
        .with_columns(
            pl.when(pl.col("running"))
            .then(pl.col("event_t").shift(-1).over(FILE_KEY) - pl.col("event_t"))
            .otherwise(0.0)
            .fill_null(0.0)
            .cum_sum()
            .shift(1, fill_value=0.0)
            .over(FILE_KEY)
            .alias("timer_at_event")
        )
        .select(*FILE_KEY, "event_t", "running", "timer_at_event")
    )
    first = steps.group_by(FILE_KEY).agg(
        pl.col("event_t").first().alias("first_event_t"),
        (~pl.col("running").first()).alias("running_before"),
    )
    return steps.sort("event_t"), first


def _timer_reading(frame: pl.LazyFrame, steps, first, t: str, out: str) -> pl.LazyFrame:
    """``frame`` (with FILE_KEY and time column ``t``) plus the file's timer reading ``out`` at
    ``t``: null where the file has no timer events."""
    reading = pl.when(pl.col("event_t").is_not_null()).then(
        pl.col("timer_at_event")
        + pl.when(pl.col("running")).then(pl.col(t) - pl.col("event_t")).otherwise(0.0)
    )
    before_first = (
        pl.when(pl.col("running_before")).then(pl.col(t) - pl.col("first_event_t")).otherwise(0.0)
    )
    return (
        frame.sort(t, maintain_order=True)
        .join_asof(
            steps,
            left_on=t,
            right_on="event_t",
            by=FILE_KEY,
            strategy="backward",
            check_sortedness=False,
        )
        .join(first, on=FILE_KEY, how="left", maintain_order="left")
        .with_columns(
            reading.otherwise(
                pl.when(pl.col("first_event_t").is_not_null()).then(before_first)
            ).alias(out)
        )
        .drop("event_t", "running", "timer_at_event", "first_event_t", "running_before")
    )


def _assign_laps(laps: pl.LazyFrame, spans: pl.LazyFrame) -> pl.LazyFrame:
    """Laps with their session, ``t_s`` (start) and ``_end_s``: none is lost for starting
    outside its session. A lap goes to the session containing its start, else its midpoint,
    else its end (devices start a first lap before the session's own start time, or write a
    lap without a start time); a lap none of those places (the clock jumped during the
    activity) goes to the nearest session of its file, where its boundaries lie outside the
    samples and the intervals say so (``start_out_of_range``/``end_out_of_range``). A missing
    start is the previous lap's end, else the session start (laps follow each other; a lap's
    elapsed time is not always its span: some devices write the timer time there); the end
    minus the elapsed time only places the lap. Laps of superseded sessions are dropped with
    them."""
    start = _epoch_s("start_time_utc")
    end = _epoch_s("end_time_utc")
    rows = laps.with_row_index("_lap_row").with_columns(
        pl.coalesce(start, end - pl.col("total_elapsed_time_s")).alias("_start_s"),
        pl.coalesce(start + pl.col("total_elapsed_time_s"), end).alias("_end_s"),
    )
    as_time = pl.from_epoch((pl.col("_key_s") * 1000).cast(pl.Int64), time_unit="ms")
    candidates = pl.concat(
        [
            rows.with_columns(key.alias("_key_s"), pl.lit(rank).alias("_rank"))
            for rank, key in enumerate(
                [
                    pl.col("_start_s"),
                    (pl.col("_start_s") + pl.col("_end_s")) / 2.0,
                    pl.col("_end_s"),
                ]
            )
        ]
    ).with_columns(as_time.dt.replace_time_zone("UTC").alias("_key_time"))
    placed = (
        _assign(candidates, spans, "_key_time", keep_superseded=True)
        .sort("_lap_row", "_rank")
        .unique("_lap_row", keep="first", maintain_order=True)
    )
    keyed = spans.select("source_sha256", "session_id", "start_s", "end_s", "superseded")
    nearest = (
        rows.join(placed.select("_lap_row"), on="_lap_row", how="anti")
        .with_columns(pl.coalesce("_start_s", "_end_s").alias("_key_s"))
        .filter(pl.col("_key_s").is_not_null())
        .sort("_key_s")
        .join_asof(
            keyed.sort("start_s"),
            left_on="_key_s",
            right_on="start_s",
            by="source_sha256",
            strategy="nearest",
            check_sortedness=False,
        )
        .filter(pl.col("session_id").is_not_null())
    )
    return (
        pl.concat([placed, nearest], how="diagonal_relaxed")
        .filter(~pl.col("superseded"))
        .sort("session_id", pl.coalesce("_start_s", "_end_s"), "lap_index", maintain_order=True)
        .with_columns(
            pl.coalesce(
                start, pl.col("_end_s").shift(1).over("session_id"), "start_s", "_start_s"
            ).alias("t_s")
        )
        .with_columns(pl.coalesce("_end_s", "t_s").alias("_end_s"))
        .drop("_lap_row", "_start_s", "_key_s", "_key_time", "_rank", "superseded")
    )


def timer_from_events(
    samples: pl.LazyFrame, events: pl.LazyFrame, spans: pl.LazyFrame
) -> pl.LazyFrame:
    """Cumulative timer time at each sample since its session's start, from the timer
    start/stop events of the session's file (vectorized): the timer reading at the sample
    minus the reading at the session start, so a session that starts with the timer already
    running (a multisport leg, a watch that starts without an event) or ends after a
    ``stop_all`` counts only the time the timer ran inside it.

    Files without timer events give clock time since the session start: the device did not
    say when it paused, so nothing is subtracted."""
    steps, first = _file_timer(events)
    sessions = (
        spans.filter(~pl.col("superseded"))
        .select("session_id", *FILE_KEY, pl.col("start_s").alias("_session_start"))
        .unique("session_id", keep="first")
    )
    at_start = _timer_reading(sessions, steps, first, "_session_start", "_timer_at_start")
    joined = samples.join(at_start, on="session_id", how="left", maintain_order="left")
    return (
        _timer_reading(joined, steps, first, "t_s", "_timer_at_t")
        .with_columns(
            pl.coalesce(
                pl.col("_timer_at_t") - pl.col("_timer_at_start"),
                pl.col("t_s") - pl.col("_session_start"),
            ).alias("timer_s")
        )
        .drop(*FILE_KEY, "_session_start", "_timer_at_start", "_timer_at_t")
    )


def workout_steps(laps: pl.LazyFrame) -> pl.LazyFrame:
    """Workout steps the watch ran: runs of consecutive laps with one ``wkt_step_index``
    (a step can span several laps; a repeat visits the same index again later)."""
    run = (
        (pl.col("wkt_step_index") != pl.col("wkt_step_index").shift(1).over("session_id"))
        .fill_null(True)
        .cum_sum()
        .over("session_id")
    )
    return (
        laps.filter(pl.col("wkt_step_index").is_not_null())
        .sort("session_id", "start_s")
        .with_columns(run.alias("_run"))
        .group_by("session_id", "_run")
        .agg(
            pl.col("start_s").min(),
            pl.col("end_s").max(),
            pl.col("wkt_step_index").first(),
            pl.col("intensity").first(),
            pl.col("device_distance_m").sum(),
            pl.col("device_timer_s").sum(),
            pl.col("device_elapsed_s").sum(),
        )
        .sort("session_id", "start_s", "_run")
        .with_columns(
            pl.lit("workout_step").alias("kind"),
            pl.int_range(pl.len()).over("session_id").cast(pl.Int64).alias("interval_index"),
        )
        .drop("_run")
    )


def pool_length_distance(lengths: pl.LazyFrame, spans: pl.LazyFrame) -> pl.LazyFrame:
    """Pool swims (``lap_swimming``, or any swim but open water that has lengths): the
    distance at every length boundary, from the ``length`` messages. The watch counts whole
    lengths; its records come only when a length is done, seconds late, and cannot tell a
    rest from a slow length, so laps measured on records smear each length over the rest next
    to it. Here the distance is the pool length × the active lengths completed at each
    length's start and end (flat over idle lengths, i.e. rests); the pool length is the
    session's distance over its active lengths. Returns ``session_id, t_s, distance_m``, one
    row per instant, never decreasing: some watches write a length twice or let lengths
    overlap, and a distance that dropped would read as an odometer reset downstream (and be
    re-based onto the previous total). Where lengths meet, an instant takes the highest end
    reached there, else the lowest start (overlapping lengths count from the first one's
    start)."""
    active = (pl.col("length_type") == "active").cast(pl.Int64)
    rows = (
        _assign(lengths, spans, "start_time_utc")
        .join(
            spans.filter(~pl.col("superseded")).select(
                "session_id", "sport", "sub_sport", pl.col("total_distance_m").alias("_total")
            ),
            on="session_id",
        )
        # Pool swims: lap_swimming, or a swim with lengths that is not open water (some
        # devices leave sub_sport generic).
        .filter(
            (pl.col("sub_sport") == "lap_swimming")
            | ((pl.col("sport") == "swimming") & pl.col("sub_sport").fill_null("").ne("open_water"))
        )
        .sort("session_id", "t_s", "message_index")
        .with_columns(
            active.alias("_active"),
            pl.coalesce(
                pl.col("t_s") + pl.col("total_elapsed_time_s"), _epoch_s("end_time_utc")
            ).alias("_end"),
        )
        .with_columns(
            (pl.col("_total") / pl.col("_active").sum().over("session_id")).alias("_pool"),
            pl.col("_active").cum_sum().over("session_id").alias("_done"),
        )
        .filter(pl.col("_pool").is_finite() & (pl.col("_pool") > 0))
    )
    before = (pl.col("_done") - pl.col("_active")) * pl.col("_pool")
    ends = pl.col("distance_m").filter(pl.col("_end_row"))
    return (
        pl.concat(
            [
                rows.select("session_id", "t_s", before.alias("distance_m"), _end_row=False),
                rows.select(
                    "session_id",
                    pl.col("_end").alias("t_s"),
                    (pl.col("_done") * pl.col("_pool")).alias("distance_m"),
                    _end_row=True,
                ).filter(pl.col("t_s").is_not_null()),
            ]
        )
        .group_by("session_id", "t_s")
        .agg(
            pl.when(pl.col("_end_row").any())
            .then(ends.max())
            .otherwise(pl.col("distance_m").min())
            .alias("distance_m")
        )
        .sort("session_id", "t_s")
        .with_columns(pl.col("distance_m").cum_max().over("session_id"))
    )


def _with_pool_lengths(samples: pl.LazyFrame, by_lengths: pl.LazyFrame) -> pl.LazyFrame:
    """Samples of pool swims with their distance from the lengths: the records' distance
    dropped, a row added at every length boundary carrying the heart rate, cadence and power
    of the record before it (they hold until the next sample; a null would read as missing
    there; speed stays empty: a length's own distance and time give it). Other sessions'
    samples untouched, in their order."""
    pooled = by_lengths.select("session_id").unique()
    held = ("hr_bpm", "cadence", "power_w")
    from_lengths = pl.col("_from_lengths")
    pool = (
        pl.concat(
            [
                samples.join(pooled, on="session_id", how="semi", maintain_order="left")
                .with_columns(pl.lit(None, pl.Float64).alias("distance_m"))
                .with_columns(pl.lit(False).alias("_from_lengths")),
                by_lengths.with_columns(pl.lit(True).alias("_from_lengths")),
            ],
            how="diagonal_relaxed",
        )
        .sort("session_id", "t_s", "_from_lengths", maintain_order=True)
        .with_columns(
            pl.when(from_lengths)
            .then(pl.col(c).forward_fill().over("session_id"))
            .otherwise(pl.col(c))
            .alias(c)
            for c in held
        )
        .drop("_from_lengths")
    )
    others = samples.join(pooled, on="session_id", how="anti", maintain_order="left")
    return pl.concat([others, pool], how="diagonal_relaxed")


def fit_activity_model(
    files: pl.LazyFrame,
    sessions: pl.LazyFrame,
    laps: pl.LazyFrame,
    records: pl.LazyFrame,
    events: pl.LazyFrame,
    lengths: pl.LazyFrame,
) -> tuple[pl.LazyFrame, pl.LazyFrame, pl.LazyFrame]:
    """Return (sessions, samples, bounds) in the silver model."""
    spans = _session_spans(files, sessions, records)
    samples = _assign(records, spans, "time_utc").select(
        "session_id",
        "t_s",
        "distance_m",
        "elevation_m",
        "hr_bpm",
        "speed_mps",
        "cadence",
        "power_w",
        "lat_deg",
        "lon_deg",
    )
    samples = _with_pool_lengths(samples, pool_length_distance(lengths, spans))
    samples = timer_from_events(samples, events, spans)

    lap_rows = _assign_laps(laps, spans)
    # Laps starting at the same instant keep the file's order (a total order: deterministic).
    bounds = lap_rows.sort("session_id", "t_s", "lap_index").with_columns(
        pl.lit("lap").alias("kind"),
        pl.int_range(pl.len()).over("session_id").cast(pl.Int64).alias("interval_index"),
        pl.col("t_s").alias("start_s"),
        pl.col("_end_s").alias("end_s"),
        pl.col("total_distance_m").alias("device_distance_m"),
        pl.col("total_timer_time_s").alias("device_timer_s"),
        pl.col("total_elapsed_time_s").alias("device_elapsed_s"),
    )
    bounds = pl.concat([bounds, workout_steps(bounds)], how="diagonal_relaxed")

    model_sessions = spans.filter(~pl.col("superseded")).select(
        "session_id",
        "user_id",
        pl.lit("fit").alias("source"),
        "activity_id",
        "source_sha256",
        "sport",
        "sub_sport",
        "start_time_utc",
        (
            pl.col("start_time_utc").dt.replace_time_zone(None)
            + pl.duration(seconds=pl.col("utc_offset_s"))
        ).alias("start_time_local"),
        "utc_offset_s",
        pl.col("total_elapsed_time_s").alias("elapsed_s"),
        pl.col("total_timer_time_s").alias("timer_s"),
        pl.col("total_distance_m").alias("distance_m"),
        pl.col("avg_hr_bpm").alias("avg_hr"),
        pl.col("max_hr_bpm").alias("max_hr"),
        pl.concat_str("manufacturer", pl.lit(" "), "product", ignore_nulls=True).alias("device"),
        pl.when(pl.col("synthesized").is_not_null())
        .then(pl.concat_str("integrity", pl.lit(";no_session_message")))
        .otherwise("integrity")
        .alias("integrity"),
    )
    return (
        conform(model_sessions, SESSION_SCHEMA),
        conform(samples, SAMPLE_SCHEMA),
        conform(bounds, BOUND_SCHEMA),
    )
