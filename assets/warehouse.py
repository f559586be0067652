from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from pipelines.resources import WearhouseLake
from pipelines.warehouse.build import MODELS, refresh_warehouse

WAREHOUSE_SPECS = [
    dg.AssetSpec(
        model,
        group_name="warehouse",
        deps=[
            "silver_activities",
            "silver_wellness",
            "silver_plan_matches",
            "silver_quarantine",
        ],
        description=f"DuckDB table `{model}` (sql/{model}.sql), also gold Parquet.",
        kinds={"duckdb", "parquet"},
    )
    for model in MODELS
]


@dg.multi_asset(specs=WAREHOUSE_SPECS, can_subset=False)
def warehouse_tables(lake: WearhouseLake, duckdb: DuckDBResource):
    result = refresh_warehouse(Path(duckdb.database), lake.layout)
    for model in MODELS:
        yield dg.MaterializeResult(
            asset_key=model,
            metadata={
                "rows": result.rows[model],
                "full_rebuild": result.full,
                "seconds": result.seconds.get(model, 0.0),
                "gold_seconds": result.seconds.get(f"gold:{model}", 0.0),
                "gold_parquet": dg.MetadataValue.path(str(lake.layout.gold_dir(model))),
            },
        )
