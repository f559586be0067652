import dagster as dg

# Everything: landing → ledger → bronze → silver → warehouse, checks included.
wearhouse_job = dg.define_asset_job(
    "wearhouse_job",
    selection=dg.AssetSelection.all(),
    description="Materialize the whole asset graph for what is in landing.",
    # The run queue limits this tag to one run at a time (dagster.yaml.example).
    tags={"wearhouse/lake": "default"},
)
