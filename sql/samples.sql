-- samples: the cleaned sample stream of every session (sorted, de-duplicated, resets undone).
SELECT
    x.session_id,
    s.user_id,
    to_timestamp(x.t_s) AS time_utc,
    x.distance_m,
    x.timer_s,
    x.elevation_m,
    x.hr_bpm,
    x.speed_mps,
    x.cadence,
    x.power_w,
    x.lat_deg,
    x.lon_deg
FROM read_parquet($samples) AS x
JOIN sessions AS s USING (session_id)
ORDER BY x.session_id, x.t_s
