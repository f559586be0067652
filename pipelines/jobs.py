import dagster as dg

# Everything: landing → ledger → bronze → silver → warehouse, checks included.
wearhouse_job = dg.define_asset_job(
    "wearhouse_job",
    # The daily-partitioned backfill asset runs in its own job (reprocess_days_job).
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("backfill"),
    description="Materialize the whole asset graph for what is in landing.",
    # The run queue limits this tag to one run at a time (dagster.yaml.example).
    tags={"wearhouse/lake": "default"},
)

# Recompute chosen days from bronze (a backfill over a partition range, as one run).
reprocess_days_job = dg.define_asset_job(
    "reprocess_days_job",
    selection=dg.AssetSelection.groups("backfill"),
    description="Recompute silver for the selected days; the next wearhouse_job applies them.",
    tags={"wearhouse/lake": "default"},
)
