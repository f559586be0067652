-- wellness_timeseries: Garmin time-offset maps in long form (heart_rate, stress_level,
-- body_battery, spo2, breaths_per_min, hrv_ms, sleep_respiration, sleep_spo2).
-- Negative stress/body-battery sentinels are already null.
SELECT user_id, summary_type, summary_id, series, time_utc, offset_s, value
FROM read_parquet($garmin_timeseries)
ORDER BY user_id, series, time_utc
