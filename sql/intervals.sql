-- intervals: laps (and later workout steps) measured at their exact boundary instants.
-- Boundary values are interpolated between the samples around each instant
-- (pipelines/intervals/alignment.py); device_* columns are the watch's own lap totals (FIT).
SELECT
    i.session_id,
    s.user_id,
    i.interval_index,
    i.kind,
    to_timestamp(i.start_s) AS start_time_utc,
    to_timestamp(i.end_s) AS end_time_utc,
    -- wall-clock time on the device; null when the offset is unknown
    make_timestamp(CAST(round((i.start_s + s.utc_offset_s) * 1e6) AS BIGINT)) AS start_time_local,
    i.timer_s,
    i.elapsed_s,
    i.distance_m,
    i.avg_speed_mps,
    i.avg_pace_s_per_km,
    i.avg_hr,
    i.max_hr,
    i.avg_cadence,
    i.avg_power_w,
    i.max_power_w,
    i.elevation_gain_m,
    i.elevation_loss_m,
    i.start_interpolated,
    i.end_interpolated,
    i.start_out_of_range,
    i.end_out_of_range,
    i.max_gap_s,
    i.gap_count,
    i.pause_count,
    i.paused_s,
    i.n_samples,
    i.device_distance_m,
    i.device_timer_s,
    i.device_elapsed_s,
    i.lap_trigger,
    i.intensity,
    i.wkt_step_index
FROM read_parquet($intervals) AS i
JOIN sessions AS s USING (session_id)
ORDER BY i.session_id, i.kind, i.interval_index
