-- quarantine: every input (or item inside one) that could not be ingested, and why.
SELECT input_path, input_sha256, stage, item_index, reason, quarantined_at
FROM read_parquet($quarantine)
ORDER BY quarantined_at, input_path, item_index
