-- planned_steps: the steps of each planned session, repeats unrolled, in execution order.
-- Targets are speed ranges in m/s (pace targets too) or heart-rate ranges in bpm.
SELECT
    *,
    CASE WHEN target_type = 'speed' THEN 1000.0 / target_high END AS target_pace_fast_s_per_km,
    CASE WHEN target_type = 'speed' THEN 1000.0 / target_low END AS target_pace_slow_s_per_km
FROM read_parquet($planned_steps)
ORDER BY planned_session_id, step_index
