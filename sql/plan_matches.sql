-- plan_matches: one row per planned session: the activity it was matched to (null: missed),
-- status (completed | partial | unstructured | missed), session compliance (%) and grade
-- (green | yellow | red | grey for missed).
SELECT * FROM read_parquet($plan_matches)
ORDER BY user_id, planned_date, planned_session_id
