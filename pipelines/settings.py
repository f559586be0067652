"""Where wearhouse keeps its data: the contract's WEARHOUSE_* settings, Dagster-free."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME_DIRNAME = "wearhouse-home"

ENV_HOME = "WEARHOUSE_HOME"
ENV_LANDING = "WEARHOUSE_LANDING"
ENV_LAKE = "WEARHOUSE_LAKE"
ENV_DUCKDB = "WEARHOUSE_DUCKDB"


@dataclass(frozen=True)
class Settings:
    """Resolved locations. ``landing`` holds raw inputs, ``lake`` the Parquet layers."""

    home: Path
    landing: Path
    lake: Path
    duckdb: Path

    @classmethod
    def resolve(
        cls,
        home: str | os.PathLike[str] | None = None,
        landing: str | os.PathLike[str] | None = None,
        lake: str | os.PathLike[str] | None = None,
        duckdb: str | os.PathLike[str] | None = None,
        environ: dict[str, str] | None = None,
    ) -> Settings:
        """Explicit arguments win over environment variables, which win over defaults.

        An explicit ``home`` also wins over WEARHOUSE_LANDING/LAKE/DUCKDB from the environment.
        """
        env = os.environ if environ is None else environ
        home_path = Path(home or env.get(ENV_HOME) or Path.cwd() / DEFAULT_HOME_DIRNAME)
        home_path = home_path.expanduser().absolute()

        def pick(value, env_name: str, default: Path) -> Path:
            # An explicit home means "everything under it" unless a folder is given explicitly.
            from_env = None if home else env.get(env_name)
            return Path(value or from_env or default).expanduser().absolute()

        return cls(
            home=home_path,
            landing=pick(landing, ENV_LANDING, home_path / "landing"),
            lake=pick(lake, ENV_LAKE, home_path / "lake"),
            duckdb=pick(duckdb, ENV_DUCKDB, home_path / "warehouse.duckdb"),
        )

    def as_environ(self) -> dict[str, str]:
        return {
            ENV_HOME: str(self.home),
            ENV_LANDING: str(self.landing),
            ENV_LAKE: str(self.lake),
            ENV_DUCKDB: str(self.duckdb),
        }

    def ensure_dirs(self) -> None:
        for path in (self.landing, self.lake, self.duckdb.parent):
            path.mkdir(parents=True, exist_ok=True)
