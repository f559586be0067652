"""The Garmin API client for the outbound side (httpx, synchronous).

Per request: the user's bearer token (refreshed before expiry, and once more on a 401), the
key's per-minute budget (waited for), the user's daily budget (persisted across runs; spent
means the request is not sent and the caller records it for the next run), 429 answered by
waiting ``Retry-After`` (bounded), 5xx and network errors retried with jittered exponential
backoff (bounded). Every other answer goes back to the caller, which knows what a 404 or a
409 means for it. Tokens never leave in an error text.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx

from pipelines.garmin.ping import parse_retry_after, redact_text
from pipelines.lake.io import write_text_atomic
from pipelines.training.config import TrainingConfig
from pipelines.training.oauth import OAuthError
from pipelines.training.tokens import NoToken, TokenProvider

log = logging.getLogger(__name__)


class ApiError(RuntimeError):
    """A request that did not get a usable answer (message redacted)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class QuotaExceeded(ApiError):
    """The user's daily budget is spent: nothing was sent."""


class RateLimited(ApiError):
    """429 with a Retry-After beyond what one run waits, or too many 429s in a row."""


class QuotaLedger:
    """Calls per user and UTC day. Persisted (keyed by sha256 of the user id, so the file
    names nobody) because a day holds several runs."""

    def __init__(
        self,
        path: Path | None,
        per_user_day: int,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.path = path
        self.limit = per_user_day
        self.today = today
        self._day = ""
        self._calls: dict[str, int] = {}
        if path is not None and path.exists():
            try:
                doc = json.loads(path.read_text())
                self._day, self._calls = (
                    str(doc["day"]),
                    {k: int(v) for k, v in doc["calls"].items()},
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("quota ledger %s unreadable: counting from zero", path)

    @staticmethod
    def _key(user_id: str) -> str:
        return hashlib.sha256(user_id.encode()).hexdigest()

    def _roll(self) -> None:
        day = self.today().isoformat()
        if day != self._day:
            self._day, self._calls = day, {}

    def used(self, user_id: str) -> int:
        self._roll()
        return self._calls.get(self._key(user_id), 0)

    def take(self, user_id: str) -> None:
        self._roll()
        key = self._key(user_id)
        if self._calls.get(key, 0) >= self.limit:
            raise QuotaExceeded(
                f"daily quota of {self.limit} calls for user {user_id} reached: "
                "retried on a later run"
            )
        self._calls[key] = self._calls.get(key, 0) + 1
        if self.path is not None:
            write_text_atomic(json.dumps({"day": self._day, "calls": self._calls}), self.path)


class MinuteWindow:
    """At most ``per_minute`` requests in any 60 s (the key's limit): waits when full."""

    def __init__(
        self, per_minute: int, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.per_minute = per_minute
        self.clock, self.sleep = clock, sleep
        self._sent: collections.deque[float] = collections.deque()

    def wait(self) -> None:
        now = self.clock()
        while self._sent and now - self._sent[0] >= 60.0:
            self._sent.popleft()
        if len(self._sent) >= self.per_minute:
            self.sleep(60.0 - (now - self._sent[0]))
            self._sent.popleft()
        self._sent.append(self.clock())


class GarminClient:
    def __init__(
        self,
        config: TrainingConfig,
        tokens: TokenProvider,
        quota: QuotaLedger,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.quota = quota
        self.sleep = sleep
        self.window = MinuteWindow(config.quotas.calls_per_minute, clock, sleep)
        self.calls = 0  # requests sent by this client
        self.secrets: set[str] = set()  # every token used: redacted from every text
        self._http = httpx.Client(
            base_url=config.api_url,
            transport=transport,
            timeout=config.timeout_s,
            trust_env=False,  # no proxy or .netrc credentials from the environment
            follow_redirects=False,  # a redirect would carry the bearer token elsewhere
            headers={"User-Agent": config.user_agent, "Accept": "application/json"},
        )

    def __enter__(self) -> GarminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _backoff(self, attempt: int) -> float:
        retries = self.config.retries
        delay = min(retries.backoff_max_s, retries.backoff_base_s * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)

    def request(
        self,
        method: str,
        path: str,
        user_id: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send with retries; return the first answer that is neither 429 nor 5xx."""
        retries = self.config.retries
        try:
            token = self.tokens.access_token(user_id)
        except (NoToken, OAuthError) as exc:  # never connected, or the refresh was refused
            raise ApiError(f"{user_id}: {exc}") from None
        self.secrets.add(token)
        where = f"{method} {path}"
        attempt = waits = 0
        refreshed = False
        while True:
            self.quota.take(user_id)
            self.window.wait()
            attempt += 1
            self.calls += 1
            try:
                response = self._http.request(
                    method,
                    path,
                    json=json_body,
                    params=params,
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.HTTPError as exc:
                detail = redact_text(f"{type(exc).__name__}: {exc}", self.secrets)[:200]
                if attempt >= retries.max_attempts:
                    message = f"{where}: network error after {attempt} attempts: {detail}"
                    raise ApiError(message) from None
                log.info("%s: %s; retrying", where, detail)
                self.sleep(self._backoff(attempt))
                continue
            status = response.status_code
            if status == 429:
                delay = parse_retry_after(response.headers.get("Retry-After"))
                delay = self._backoff(waits + 1) if delay is None else delay
                waits += 1
                attempt -= 1  # waiting for the limit is not a failed attempt
                if delay > retries.max_retry_after_s or waits > retries.max_429_waits:
                    raise RateLimited(f"{where}: rate limited (Retry-After {delay:.0f} s)", 429)
                log.info("%s: 429, waiting %.1f s", where, delay)
                self.sleep(delay)
                continue
            if status >= 500:
                if attempt >= retries.max_attempts:
                    raise ApiError(
                        f"{where}: HTTP {status} after {attempt} attempts: {self.detail(response)}",
                        status,
                    )
                self.sleep(self._backoff(attempt))
                continue
            if status == 401 and not refreshed and self.tokens.can_refresh(user_id):
                refreshed = True
                try:
                    token = self.tokens.access_token(user_id, force_refresh=True)
                except (NoToken, OAuthError) as exc:
                    raise ApiError(
                        redact_text(f"{where}: 401, refresh failed: {exc}", self.secrets), 401
                    ) from None
                self.secrets.add(token)
                continue
            return response

    def detail(self, response: httpx.Response) -> str:
        """A short, redacted excerpt of an answer's body for an error text."""
        return redact_text(" ".join(response.text[:300].split()), self.secrets)

    def error(self, response: httpx.Response, what: str) -> ApiError:
        return ApiError(
            f"{what}: HTTP {response.status_code}: {self.detail(response)}", response.status_code
        )
