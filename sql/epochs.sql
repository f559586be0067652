-- epochs: 15-minute activity epochs (a complete epoch replaces an earlier partial one).
SELECT
    user_id,
    summary_id,
    start_time_utc,
    start_time_local,
    utc_offset_s,
    duration_s,
    activity_type,
    active_time_s,
    steps,
    distance_m,
    active_kcal,
    met,
    intensity,
    mean_motion_intensity,
    max_motion_intensity,
    received_at
FROM read_parquet($garmin_epochs)
ORDER BY user_id, start_time_utc, activity_type
