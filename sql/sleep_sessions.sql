-- sleep_sessions: one row per night (Garmin `sleeps`; a *_FINAL version replaces *_TENTATIVE).
SELECT
    user_id,
    summary_id,
    CAST(calendar_date AS DATE) AS calendar_date,
    start_time_utc,
    start_time_local,
    utc_offset_s,
    duration_s,
    deep_sleep_s,
    light_sleep_s,
    rem_sleep_s,
    awake_s,
    coalesce(unmeasurable_sleep_s, unmeasurable_sleep_s_alt) AS unmeasurable_sleep_s,
    upper(validation) AS validation,
    received_at,
    raw_json
FROM read_parquet($garmin_sleeps)
ORDER BY user_id, start_time_utc
