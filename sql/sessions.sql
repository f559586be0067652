-- sessions: one row per activity (Garmin API summary/details or FIT session).
-- Built from silver Parquet; $sessions and $intervals are file paths bound as parameters.
WITH lap_counts AS (
    SELECT session_id, count(*) AS n_laps
    FROM read_parquet($intervals)
    WHERE kind = 'lap'
    GROUP BY session_id
)
SELECT
    s.session_id,
    s.user_id,
    s.source,
    s.activity_id,
    s.summary_id,
    s.sport,
    s.sub_sport,
    s.start_time_utc,
    s.start_time_local,
    s.utc_offset_s,
    s.elapsed_s,
    s.timer_s,
    s.distance_m,
    s.avg_hr,
    s.max_hr,
    s.device,
    s.integrity,
    s.sources,
    coalesce(s.is_multisport_parent, false) AS is_multisport_parent,
    s.parent_summary_id,
    coalesce(l.n_laps, 0) AS n_laps,
    s.source_sha256
FROM read_parquet($sessions) AS s
LEFT JOIN lap_counts AS l USING (session_id)
ORDER BY s.start_time_utc, s.session_id
