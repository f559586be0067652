"""Dagster resources: where the lake and landing are, and the DuckDB warehouse."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from pipelines.lake.layout import LakeLayout
from pipelines.settings import ENV_DUCKDB, ENV_LAKE, ENV_LANDING, Settings


class WearhouseLake(dg.ConfigurableResource):
    """Landing (immutable inputs) and lake (Parquet layers) folders."""

    landing: str
    lake: str

    @property
    def landing_path(self) -> Path:
        return Path(self.landing)

    @property
    def layout(self) -> LakeLayout:
        return LakeLayout(Path(self.lake))


def _configured(env_name: str, resolved: Path) -> str | dg.EnvVar:
    # Show an env-sourced value as such in the UI; otherwise pin the resolved default.
    return dg.EnvVar(env_name) if os.environ.get(env_name) else str(resolved)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    env_driven = settings == Settings.resolve()
    pick = _configured if env_driven else (lambda _name, resolved: str(resolved))
    return {
        "lake": WearhouseLake(
            landing=pick(ENV_LANDING, settings.landing), lake=pick(ENV_LAKE, settings.lake)
        ),
        # Read-only: asset checks and other readers never hold the write lock. The warehouse
        # asset writes a new snapshot file of its own (pipelines.warehouse.build).
        "duckdb": DuckDBResource(
            database=pick(ENV_DUCKDB, settings.duckdb),
            connection_config={"access_mode": "READ_ONLY"},
        ),
    }
