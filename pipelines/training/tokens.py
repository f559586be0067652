"""Per-user Garmin tokens: an encrypted store, with the older plain JSON file as a fallback.

The store is one Fernet-encrypted JSON document (key: ``WEARHOUSE_SECRET_KEY``), by default
``<home>/secrets/garmin_tokens.enc``: connected users' access and refresh tokens, and the
pending PKCE verifiers of connections under way. Every change is read-modify-write under an
exclusive file lock and lands by rename, so a refresh that rotates the refresh token is never
half written nor lost to a concurrent process (a lost rotated refresh token disconnects the
user). Token values never appear in messages: errors name the user, never the token.

Users not in the store are looked up in ``WEARHOUSE_GARMIN_TOKENS`` (JSON ``{userId: token}``),
whose tokens cannot be refreshed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from pipelines.garmin.ping import TokenStoreError, load_token_store

__all__ = ["TokenProvider", "TokenStore", "TokenStoreError", "UserTokens", "generate_key"]

_VERSION = 1


class NoToken(LookupError):
    """No usable token for a user (never connected, or the refresh failed)."""


@dataclass(frozen=True)
class UserTokens:
    access_token: str
    expires_at: float  # epoch seconds
    refresh_token: str | None = None
    refresh_expires_at: float | None = None
    scope: str | None = None
    garmin_user_id: str | None = None

    def __repr__(self) -> str:  # dataclass repr would print the tokens
        return f"UserTokens(expires_at={self.expires_at}, garmin_user_id={self.garmin_user_id})"

    def expiring(self, now: float, margin_s: float) -> bool:
        return self.expires_at - margin_s <= now


def generate_key() -> str:
    return Fernet.generate_key().decode()


def _fernet(key: str | None) -> Fernet:
    if not key:
        raise TokenStoreError(
            "WEARHOUSE_SECRET_KEY is not set: the token store is encrypted with it (make one "
            "with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`)"
        )
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError):
        raise TokenStoreError(
            "WEARHOUSE_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes)"
        ) from None


class TokenStore:
    """The encrypted document ``{"users": {id: tokens}, "pending": {state: …}}``."""

    def __init__(self, path: Path, key: str | None) -> None:
        self.path = path
        self._fernet = _fernet(key)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = self.path.with_name(f"{self.path.name}.lock")
        with lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return {"version": _VERSION, "users": {}, "pending": {}}
        except OSError as exc:
            raise TokenStoreError(f"cannot read token store {self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(self._fernet.decrypt(blob))
        except InvalidToken:
            raise TokenStoreError(
                f"token store {self.path} cannot be decrypted (wrong WEARHOUSE_SECRET_KEY?)"
            ) from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise TokenStoreError(f"token store {self.path} is damaged") from None
        if not isinstance(doc, dict) or doc.get("version") != _VERSION:
            raise TokenStoreError(f"token store {self.path} has an unknown format")
        doc.setdefault("users", {})
        doc.setdefault("pending", {})
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        blob = self._fernet.encrypt(json.dumps(doc, sort_keys=True).encode())
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def read(self) -> dict[str, Any]:
        with self._locked():
            return self._read()

    def update(self, change: Callable[[dict[str, Any]], Any]) -> Any:
        """Apply ``change`` to the document under the lock and store it; returns its result."""
        with self._locked():
            doc = self._read()
            result = change(doc)
            self._write(doc)
            return result

    def get(self, user_id: str) -> UserTokens | None:
        entry = self.read()["users"].get(user_id)
        return UserTokens(**entry) if entry else None

    def put(self, user_id: str, tokens: UserTokens) -> None:
        self.update(lambda doc: doc["users"].__setitem__(user_id, asdict(tokens)))

    def delete(self, user_id: str) -> bool:
        return bool(self.update(lambda doc: doc["users"].pop(user_id, None)))

    def users(self) -> list[str]:
        return sorted(self.read()["users"])


class TokenProvider:
    """Access tokens per user: from the store (refreshed before expiry, the rotated refresh
    token stored under the store's lock) or else from the plain JSON file."""

    def __init__(
        self,
        store: TokenStore | None,
        tokens_json: Path | None,
        refresh: Callable[[str], UserTokens] | None,
        margin_s: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._json_path = tokens_json
        self._json: dict[str, str] | None = None
        self._refresh = refresh
        self.margin_s = margin_s
        self.clock = clock

    def _plain(self) -> dict[str, str]:
        if self._json is None:
            self._json = load_token_store(self._json_path) if self._json_path else {}
        return self._json

    def known_users(self) -> set[str]:
        stored = set(self.store.users()) if self.store and self.store.path.exists() else set()
        return stored | set(self._plain())

    def access_token(self, user_id: str, force_refresh: bool = False) -> str:
        tokens = self.store.get(user_id) if self.store and self.store.path.exists() else None
        if tokens is None:
            token = self._plain().get(user_id)
            if token is None:
                raise NoToken(f"no Garmin token for user {user_id} (wearhouse garmin connect)")
            return token
        if force_refresh or tokens.expiring(self.clock(), self.margin_s):
            tokens = self._refreshed(user_id, tokens.access_token if force_refresh else None)
        return tokens.access_token

    def can_refresh(self, user_id: str) -> bool:
        tokens = self.store.get(user_id) if self.store and self.store.path.exists() else None
        return bool(tokens and tokens.refresh_token and self._refresh)

    def _refreshed(self, user_id: str, rejected: str | None) -> UserTokens:
        assert self.store is not None
        refresh = self._refresh

        def change(doc: dict[str, Any]) -> UserTokens:
            current = UserTokens(**doc["users"][user_id])
            # Another process may have refreshed meanwhile: its tokens are good, and the
            # refresh token we read before is spent (they rotate).
            fresh = current.access_token != rejected and not current.expiring(
                self.clock(), self.margin_s
            )
            if fresh:
                return current
            if not current.refresh_token or refresh is None:
                raise NoToken(f"the access token of user {user_id} expired and cannot be refreshed")
            new = refresh(current.refresh_token)
            if new.garmin_user_id is None and current.garmin_user_id:
                new = UserTokens(**{**asdict(new), "garmin_user_id": current.garmin_user_id})
            doc["users"][user_id] = asdict(new)
            return new

        return self.store.update(change)
