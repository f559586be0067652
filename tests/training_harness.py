"""Shared set-up of the outbound Garmin tests: plans in silver, a config aimed at the fake."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import yaml
from cryptography.fernet import Fernet

from pipelines.lake.io import write_parquet_atomic
from pipelines.lake.layout import LakeLayout
from pipelines.plans.model import frames
from pipelines.plans.native import parse_native_plan
from pipelines.settings import Settings
from pipelines.training import oauth
from pipelines.training.client import GarminClient, QuotaLedger
from pipelines.training.config import Retries, TrainingConfig
from pipelines.training.sync import SyncOptions, SyncReport, run_sync
from pipelines.training.tokens import TokenProvider, TokenStore
from tests.fake_garmin import CLIENT_ID, CLIENT_SECRET, FakeGarmin

START, END = date(2026, 3, 1), date(2026, 3, 31)

INTERVAL_PLAN = {
    "plan": "spring",
    "sport": "running",
    "sessions": [
        {
            "date": "2026-03-03",
            "id": "tue",
            "name": "6 x 800 m",
            "intervals": [
                {"kind": "warmup", "duration": "15min"},
                {
                    "repeat": 6,
                    "intervals": [
                        {"kind": "work", "distance": "800m", "pace": "3:50-4:00/km"},
                        {"kind": "recovery", "duration": "90s"},
                    ],
                },
                {"kind": "cooldown", "duration": "10min"},
            ],
        },
        {
            "date": "2026-03-05",
            "id": "thu",
            "name": "easy",
            "intervals": [{"kind": "work", "duration": "40min", "hr": "130-145"}],
        },
        {
            "date": "2026-03-08",
            "id": "sun",
            "name": "long run",
            "intervals": [{"kind": "work", "distance": "18km", "pace": "5:00-5:20/km"}],
        },
    ],
}


def write_plans(layout: LakeLayout, plans: dict[str, dict]) -> None:
    """Silver planned sessions and steps for ``{user: native plan document}``, as the plans
    stage writes them."""
    sessions, steps = [], []
    for user, doc in plans.items():
        parsed = parse_native_plan(yaml.safe_dump(doc).encode(), "plan.yaml", user)
        s, t = frames(user, parsed)
        sessions.append(s)
        steps.append(t)
    write_parquet_atomic(pl.concat(sessions), layout.silver_path("planned_sessions"))
    write_parquet_atomic(pl.concat(steps), layout.silver_path("planned_steps"))


class Harness:
    def __init__(self, settings: Settings, fake: FakeGarmin) -> None:
        self.settings, self.fake = settings, fake
        self.layout = LakeLayout(settings.lake)
        self.key = Fernet.generate_key().decode()
        self.tokens_json = settings.home / "garmin_tokens.json"
        self.config = TrainingConfig(
            api_url=fake.url,
            authorize_url=fake.url + "/oauth2Confirm",
            token_url=fake.url + "/oauth/token",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            secret_key=self.key,
            token_store=settings.home / "secrets" / "garmin_tokens.enc",
            tokens_json=self.tokens_json,
            retries=Retries(max_attempts=3, backoff_base_s=0.05, backoff_max_s=0.2),
        )
        self.plain_tokens: dict[str, str] = {}

    def connect(self, user: str, permissions: list[str] | None = None) -> str:
        """A user whose token is in the plain JSON file (WEARHOUSE_GARMIN_TOKENS)."""
        token = self.fake.add_user(user, permissions)
        self.plain_tokens[user] = token
        self.tokens_json.write_text(json.dumps(self.plain_tokens))
        return token

    def store(self) -> TokenStore:
        return TokenStore(self.config.token_store, self.key)

    def provider(self) -> TokenProvider:
        return TokenProvider(
            self.store(), self.tokens_json, oauth.refresher(self.config), margin_s=60
        )

    def client(self, per_user_day: int = 200, today=None) -> GarminClient:
        ledger = QuotaLedger(self.layout.outbound_dir / "garmin_calls.json", per_user_day)
        if today is not None:
            ledger.today = today
        return GarminClient(self.config, self.provider(), ledger)

    def push(self, users=None, client: GarminClient | None = None, **options) -> SyncReport:
        opts = SyncOptions(START, END, frozenset(users) if users else None, **options)
        if client is not None:
            return run_sync(self.layout, client, opts)
        with self.client() as fresh:
            return run_sync(self.layout, fresh, opts)

    def environ(self) -> dict[str, str]:
        return {
            "WEARHOUSE_GARMIN_API_URL": self.fake.url,
            "WEARHOUSE_GARMIN_AUTHORIZE_URL": self.fake.url + "/oauth2Confirm",
            "WEARHOUSE_GARMIN_TOKEN_URL": self.fake.url + "/oauth/token",
            "WEARHOUSE_GARMIN_CLIENT_ID": CLIENT_ID,
            "WEARHOUSE_GARMIN_CLIENT_SECRET": CLIENT_SECRET,
            "WEARHOUSE_SECRET_KEY": self.key,
            "WEARHOUSE_GARMIN_TOKENS": str(self.tokens_json),
        }
