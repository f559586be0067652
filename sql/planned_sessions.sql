-- planned_sessions: every session of every plan (native plans and scheduled Garmin workouts).
SELECT * FROM read_parquet($planned_sessions)
ORDER BY user_id, planned_date, planned_session_id
