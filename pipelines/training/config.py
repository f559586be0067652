"""Settings of the outbound Garmin side, resolved once from the environment and passed down.

Base URLs are operator configuration: https, or plain http for loopback hosts only (a test
server, a local proxy), so a token is never sent in the clear over a network.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ENV_API_URL = "WEARHOUSE_GARMIN_API_URL"
ENV_AUTHORIZE_URL = "WEARHOUSE_GARMIN_AUTHORIZE_URL"
ENV_TOKEN_URL = "WEARHOUSE_GARMIN_TOKEN_URL"
ENV_CLIENT_ID = "WEARHOUSE_GARMIN_CLIENT_ID"
ENV_CLIENT_SECRET = "WEARHOUSE_GARMIN_CLIENT_SECRET"
ENV_REDIRECT_URI = "WEARHOUSE_GARMIN_REDIRECT_URI"
ENV_SECRET_KEY = "WEARHOUSE_SECRET_KEY"
ENV_TOKENS = "WEARHOUSE_GARMIN_TOKENS"  # the older plain JSON file {userId: accessToken}
ENV_TOKEN_STORE = "WEARHOUSE_GARMIN_TOKEN_STORE"
ENV_CALLS_PER_MINUTE = "WEARHOUSE_GARMIN_CALLS_PER_MINUTE"
ENV_CALLS_PER_USER_DAY = "WEARHOUSE_GARMIN_CALLS_PER_USER_DAY"

DEFAULT_API_URL = "https://apis.garmin.com"
DEFAULT_AUTHORIZE_URL = "https://connect.garmin.com/oauth2Confirm"
DEFAULT_TOKEN_URL = "https://diauth.garmin.com/di-oauth2-service/oauth/token"
# Evaluation keys: 100 calls a minute, 200 per user a day (production: 3,000 and 1,000).
DEFAULT_CALLS_PER_MINUTE = 100
DEFAULT_CALLS_PER_USER_DAY = 200

_LOOPBACK_NAMES = frozenset({"localhost"})


class ConfigError(ValueError):
    """A setting that cannot be used, with the reason (never a secret's value)."""


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def checked_url(url: str, name: str) -> str:
    """``url`` without a trailing slash when it is https, or http to a loopback host."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"{name}: not a URL ({exc})") from None
    if parsed.userinfo:
        raise ConfigError(f"{name}: credentials in the URL are refused")
    if not parsed.host:
        raise ConfigError(f"{name}: the URL has no host")
    if parsed.query or parsed.fragment:
        raise ConfigError(f"{name}: no query or fragment allowed in a base URL")
    if parsed.scheme == "https":
        return url.rstrip("/")
    if parsed.scheme == "http" and _is_loopback(parsed.host):
        return url.rstrip("/")
    raise ConfigError(
        f"{name}: {parsed.scheme}://{parsed.host} refused: https only "
        "(plain http for loopback hosts only)"
    )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{name}: must be at least 1")
    return value


@dataclass(frozen=True)
class Quotas:
    calls_per_minute: int = DEFAULT_CALLS_PER_MINUTE  # for the whole key
    calls_per_user_day: int = DEFAULT_CALLS_PER_USER_DAY  # UTC day


@dataclass(frozen=True)
class Retries:
    max_attempts: int = 4  # per request, for 5xx and network errors
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0  # a longer Retry-After fails the request (next run)
    max_429_waits: int = 3  # per request


@dataclass(frozen=True)
class TrainingConfig:
    api_url: str = DEFAULT_API_URL
    authorize_url: str = DEFAULT_AUTHORIZE_URL
    token_url: str = DEFAULT_TOKEN_URL
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    redirect_uri: str | None = None
    secret_key: str | None = field(default=None, repr=False)  # Fernet key of the token store
    token_store: Path | None = None  # encrypted store; None: no store (JSON file only)
    tokens_json: Path | None = None  # $WEARHOUSE_GARMIN_TOKENS
    quotas: Quotas = Quotas()
    retries: Retries = Retries()
    timeout_s: float = 30.0
    refresh_margin_s: float = 600.0  # refresh an access token this long before it expires
    user_agent: str = "wearhouse-training"

    def __post_init__(self) -> None:
        for name in ("api_url", "authorize_url", "token_url"):
            object.__setattr__(self, name, checked_url(getattr(self, name), name))

    @classmethod
    def resolve(cls, home: Path, environ: Mapping[str, str] | None = None) -> TrainingConfig:
        """From WEARHOUSE_GARMIN_* and WEARHOUSE_SECRET_KEY; the token store defaults to
        ``<home>/secrets/garmin_tokens.enc``."""
        env = os.environ if environ is None else environ
        store = env.get(ENV_TOKEN_STORE)
        tokens_json = env.get(ENV_TOKENS)
        try:
            return cls(
                api_url=env.get(ENV_API_URL) or DEFAULT_API_URL,
                authorize_url=env.get(ENV_AUTHORIZE_URL) or DEFAULT_AUTHORIZE_URL,
                token_url=env.get(ENV_TOKEN_URL) or DEFAULT_TOKEN_URL,
                client_id=env.get(ENV_CLIENT_ID) or None,
                client_secret=env.get(ENV_CLIENT_SECRET) or None,
                redirect_uri=env.get(ENV_REDIRECT_URI) or None,
                secret_key=env.get(ENV_SECRET_KEY) or None,
                token_store=Path(store) if store else home / "secrets" / "garmin_tokens.enc",
                tokens_json=Path(tokens_json) if tokens_json else None,
                quotas=Quotas(
                    _positive_int(env, ENV_CALLS_PER_MINUTE, DEFAULT_CALLS_PER_MINUTE),
                    _positive_int(env, ENV_CALLS_PER_USER_DAY, DEFAULT_CALLS_PER_USER_DAY),
                ),
            )
        except ConfigError:
            raise
        except ValueError as exc:  # a malformed URL the parser rejected
            raise ConfigError(str(exc)) from None

    def require_client(self) -> tuple[str, str]:
        if not self.client_id or not self.client_secret:
            raise ConfigError(
                f"{ENV_CLIENT_ID} and {ENV_CLIENT_SECRET} are needed to connect users"
            )
        return self.client_id, self.client_secret
