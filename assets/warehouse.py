from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from pipelines.resources import WearhouseLake
from pipelines.warehouse.build import MODELS, refresh_warehouse
from pipelines.warehouse.tables import tables

WAREHOUSE_SPECS = [
    dg.AssetSpec(
        t.name,
        group_name="warehouse",
        deps=[
            "silver_activities",
            "silver_wellness",
            "silver_plan_matches",
            "silver_quarantine",
            "garmin_workouts_sync",
        ],
        description=f"{t.summary[0].upper()}{t.summary[1:]}. DuckDB table `{t.name}` "
        f"(sql/{t.name}.sql), also a gold Delta table.",
        kinds={"duckdb", "delta"},
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(column, description=meaning)
                    for column, meaning in t.columns.items()
                ]
            )
        },
    )
    for t in tables()
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
