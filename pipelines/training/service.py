"""Building the outbound side from resolved settings: shared by the CLI and the asset."""

from __future__ import annotations

from datetime import date, timedelta

from pipelines.lake.layout import LakeLayout
from pipelines.settings import Settings
from pipelines.training import oauth
from pipelines.training.client import GarminClient, QuotaLedger
from pipelines.training.config import TrainingConfig
from pipelines.training.sync import SyncOptions, SyncReport, run_sync
from pipelines.training.tokens import TokenProvider, TokenStore, TokenStoreError

DEFAULT_DAYS_AHEAD = 28


class Parts:
    """Everything a command needs, built once from the resolved settings."""

    def __init__(self, settings: Settings, config: TrainingConfig) -> None:
        self.settings, self.config = settings, config
        self.layout = LakeLayout(settings.lake)
        store_path = config.token_store
        if config.secret_key and store_path is not None:
            self.store: TokenStore | None = TokenStore(store_path, config.secret_key)
        elif store_path is not None and store_path.exists():
            raise TokenStoreError(f"WEARHOUSE_SECRET_KEY is needed to read {store_path}")
        else:
            self.store = None
        self.tokens = TokenProvider(
            self.store, config.tokens_json, oauth.refresher(config), config.refresh_margin_s
        )

    def require_store(self) -> TokenStore:
        if self.store is None:
            raise TokenStoreError("WEARHOUSE_SECRET_KEY must be set to keep connected users")
        return self.store

    def client(self) -> GarminClient:
        quota = QuotaLedger(
            self.layout.outbound_dir / "garmin_calls.json", self.config.quotas.calls_per_user_day
        )
        return GarminClient(self.config, self.tokens, quota)


def push_plans(
    parts: Parts,
    start: date | None = None,
    end: date | None = None,
    user: str | None = None,
    dry_run: bool = False,
    verify: bool = False,
) -> SyncReport:
    """One push of the window (default: today to +28 days). Without ``user``, a real push acts
    for the users it holds a token for; other users' sessions are left alone."""
    start = start or date.today()
    end = end or start + timedelta(days=DEFAULT_DAYS_AHEAD)
    if user is not None:
        users: frozenset[str] | None = frozenset({user})
    else:
        users = None if dry_run else frozenset(parts.tokens.known_users())
    options = SyncOptions(start, end, users, dry_run=dry_run, verify=verify)
    if dry_run:
        return run_sync(parts.layout, None, options)
    with parts.client() as client:
        return run_sync(parts.layout, client, options)
