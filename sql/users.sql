-- users: everyone we hold data for, with current permissions; erased (deregistered) users
-- remain only as a hashed id with the deregistration time.
SELECT
    user_id,
    status,
    first_received_at,
    last_received_at,
    permissions,
    permissions_changed_at,
    user_id_sha256,
    deregistered_at
FROM read_parquet($users)
ORDER BY status, user_id, user_id_sha256
