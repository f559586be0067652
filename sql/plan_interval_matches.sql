-- plan_interval_matches: one row per planned step: where it was run (boundaries), from which
-- evidence (wkt_step_index | manual_laps | detected | none), planned vs actual, and compliance.
SELECT * FROM read_parquet($plan_interval_matches)
ORDER BY planned_session_id, step_index
