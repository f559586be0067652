-- daily_summaries: one row per user and day (Garmin `dailies`, newest version, permitted).
CREATE OR REPLACE TABLE daily_summaries AS
SELECT
    user_id,
    summary_id,
    CAST(calendar_date AS DATE) AS calendar_date,
    start_time_utc,
    start_time_local,
    utc_offset_s,
    duration_s,
    steps,
    steps_goal,
    distance_m,
    active_time_s,
    active_kcal,
    bmr_kcal,
    consumed_kcal,
    moderate_intensity_s,
    vigorous_intensity_s,
    floors_climbed,
    min_hr_bpm,
    avg_hr_bpm,
    max_hr_bpm,
    resting_hr_bpm,
    -- Garmin sometimes spells it averageStresslevel
    coalesce(avg_stress_level, avg_stress_level_typo) AS avg_stress_level,
    max_stress_level,
    stress_s,
    rest_stress_s,
    low_stress_s,
    medium_stress_s,
    high_stress_s,
    stress_qualifier,
    body_battery_charged,
    body_battery_drained,
    received_at,
    raw_json
FROM read_parquet($garmin_dailies)
ORDER BY user_id, calendar_date;
