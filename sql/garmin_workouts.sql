-- garmin_workouts: what was sent to Garmin for each planned session (wearhouse garmin
-- push-plans, or the garmin_workouts_sync asset): the workout and its schedule on the
-- athlete's calendar, and how the last attempt went. The state file is absent until the first
-- push, so it is read with allow_empty and typed by a union with an empty row of the schema.
-- Rows of erased users never show, even before the next sync purges the lake's state.
WITH state AS (
    SELECT * FROM (
        SELECT
            CAST(NULL AS VARCHAR) AS planned_session_id,
            CAST(NULL AS VARCHAR) AS user_id,
            CAST(NULL AS VARCHAR) AS workout_id,
            CAST(NULL AS VARCHAR) AS schedule_id,
            CAST(NULL AS DATE) AS planned_date,
            CAST(NULL AS DATE) AS scheduled_date,
            CAST(NULL AS VARCHAR) AS status,
            CAST(NULL AS VARCHAR) AS content_hash,
            CAST(NULL AS TIMESTAMPTZ) AS synced_at,
            CAST(NULL AS VARCHAR) AS last_error,
            CAST(NULL AS BIGINT) AS failures,
            CAST(NULL AS TIMESTAMPTZ) AS updated_at
        WHERE false
    )
    UNION ALL BY NAME
    SELECT * FROM read_parquet($garmin_workouts, allow_empty = true)
)
SELECT
    planned_session_id,
    user_id,
    workout_id,
    schedule_id,
    planned_date,
    scheduled_date,
    status,
    content_hash,
    synced_at,
    last_error,
    failures,
    updated_at
FROM state
WHERE planned_session_id IS NOT NULL
    AND sha256(user_id) NOT IN (
        SELECT user_id_sha256 FROM users WHERE user_id_sha256 IS NOT NULL
    )
ORDER BY user_id, planned_date, planned_session_id
