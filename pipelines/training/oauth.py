"""OAuth 2.0 with PKCE (RFC 7636, S256): connecting a Garmin user, and refreshing tokens.

``start`` makes a verifier and a state, keeps them (encrypted, in the token store) and gives
the authorization URL to open; Garmin then redirects to the redirect URI with ``code`` and
``state``, which ``complete`` exchanges for tokens. Access tokens live about a day; refresh
tokens rotate on every refresh (``refresh``). Codes, verifiers, tokens and the client secret
are redacted from every error text.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

import httpx

from pipelines.garmin.ping import redact_text
from pipelines.training.config import TrainingConfig
from pipelines.training.tokens import TokenStore, UserTokens

PENDING_TTL_S = 3600.0  # an authorization not completed within an hour must start again


class OAuthError(RuntimeError):
    """The connection could not be made or refreshed (the reason, redacted)."""


def code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge); the verifier is 86 url-safe characters (43–128 allowed)."""
    verifier = secrets.token_urlsafe(64)
    return verifier, code_challenge(verifier)


def authorization_url(config: TrainingConfig, state: str, challenge: str) -> str:
    client_id, _ = config.require_client()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
    }
    if config.redirect_uri:
        params["redirect_uri"] = config.redirect_uri
    return f"{config.authorize_url}?{urlencode(params)}"


def start(
    config: TrainingConfig, store: TokenStore, user_id: str, now: float | None = None
) -> tuple[str, str]:
    """Begin connecting ``user_id``: (authorization URL, state)."""
    config.require_client()
    now = time.time() if now is None else now
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)

    def change(doc: dict[str, Any]) -> None:
        pending = doc["pending"]
        for old in [s for s, e in pending.items() if now - e["created_at"] > PENDING_TTL_S]:
            del pending[old]
        pending[state] = {"user_id": user_id, "verifier": verifier, "created_at": now}

    store.update(change)
    return authorization_url(config, state, challenge), state


def _client(config: TrainingConfig) -> httpx.Client:
    # trust_env off: no proxy or .netrc from the environment adds credentials or a hop.
    return httpx.Client(
        timeout=config.timeout_s,
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": config.user_agent, "Accept": "application/json"},
    )


def _tokens(body: Any, now: float) -> UserTokens:
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise OAuthError("the token endpoint answered without an access_token")
    expires_in = body.get("expires_in")
    refresh_in = body.get("refresh_token_expires_in")
    return UserTokens(
        access_token=body["access_token"],
        expires_at=now + (float(expires_in) if isinstance(expires_in, int | float) else 3600.0),
        refresh_token=body.get("refresh_token")
        if isinstance(body.get("refresh_token"), str)
        else None,
        refresh_expires_at=now + float(refresh_in) if isinstance(refresh_in, int | float) else None,
        scope=body.get("scope") if isinstance(body.get("scope"), str) else None,
    )


def _token_request(
    config: TrainingConfig,
    form: dict[str, str],
    hidden: Iterable[str],
    transport: httpx.BaseTransport | None = None,
) -> UserTokens:
    hidden = {h for h in (*hidden, config.client_secret or "") if h}
    now = time.time()
    if transport is None:
        client = _client(config)
    else:
        client = httpx.Client(transport=transport, timeout=config.timeout_s, trust_env=False)
    try:
        with client:
            response = client.post(config.token_url, data=form)
    except httpx.HTTPError as exc:
        raise OAuthError(
            redact_text(f"token endpoint unreachable: {type(exc).__name__}: {exc}", hidden)
        ) from None
    if response.status_code != 200:
        try:
            detail = response.json().get("error", "")
        except (ValueError, AttributeError):
            detail = ""
        raise OAuthError(
            redact_text(f"token endpoint answered {response.status_code} {detail}".strip(), hidden)
        )
    try:
        body = response.json()
    except ValueError:
        raise OAuthError("the token endpoint answered with something other than JSON") from None
    return _tokens(body, now)


def complete(
    config: TrainingConfig,
    store: TokenStore,
    state: str,
    code: str,
    transport: httpx.BaseTransport | None = None,
    now: float | None = None,
) -> str:
    """Exchange the authorization code of ``state``; store the tokens; return the user id."""
    client_id, client_secret = config.require_client()
    now = time.time() if now is None else now

    def take(doc: dict[str, Any]) -> dict[str, Any] | None:
        return doc["pending"].pop(state, None)

    # The state is spent whatever happens next: a code is good for one exchange only.
    pending = store.update(take)
    if pending is None:
        raise OAuthError(
            "unknown or already used state: start again with `wearhouse garmin connect`"
        )
    if now - pending["created_at"] > PENDING_TTL_S:
        raise OAuthError("this authorization is older than an hour: start again")
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": client_secret,
        "code": code,
        "code_verifier": pending["verifier"],
    }
    if config.redirect_uri:
        form["redirect_uri"] = config.redirect_uri
    tokens = _token_request(config, form, (code, pending["verifier"]), transport)
    store.put(pending["user_id"], tokens)
    return pending["user_id"]


def refresher(config: TrainingConfig, transport: httpx.BaseTransport | None = None):
    """A ``refresh_token → UserTokens`` function for ``TokenProvider``."""

    def refresh(refresh_token: str) -> UserTokens:
        client_id, client_secret = config.require_client()
        form = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        }
        return _token_request(config, form, (refresh_token,), transport)

    return refresh
