"""Garmin pings → fetched bodies and activity files in landing (pure module, no Dagster).

A ping item is ``{userId, callbackURL}`` (plus file metadata for ``activityFiles``): Garmin says
"your data is ready at this URL". The callback carries a short-lived pull token and, for activity
files, can be downloaded **once** within 24 h. So this module is careful about three things:

* Safety: only ``https`` URLs on an allowlist of Garmin hosts are ever requested, redirects are
  followed by hand and re-checked, and tokens (the URL's ``token=``, bearer tokens) are redacted
  from everything that leaves memory: reasons, state, logs (including httpx's own), exceptions.
* Exactly-once: per-item state is persisted after each item; an activity file lands under a
  deterministic name, so after a crash it is found on disk instead of being re-requested.
* Immutability: results are written to a hidden temp file and hard-linked into place, which
  never overwrites an existing landing file.

Fetched summary bodies land in ``garmin/fetched/<summaryType>/<sha256>.json`` as push envelopes,
so the push ingest reads them unchanged; activity files land in ``fit/<userId>/`` with a
``<name>.ping.json`` sidecar that links the file to the ping's activity metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import hashlib
import ipaddress
import json
import logging
import os
import random
import re
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import polars as pl

from pipelines.garmin.push import PayloadError, load_envelope
from pipelines.lake.io import write_parquet_atomic
from pipelines.lake.layout import LakeLayout
from pipelines.lake.ledger import LandingRefused, is_safe_id, read_landed
from pipelines.lake.quarantine import QuarantineBatch
from pipelines.lake.stage import failure_reason

log = logging.getLogger(__name__)

STAGE = "garmin_ping"
TOKENS_ENV = "WEARHOUSE_GARMIN_TOKENS"
DEFAULT_ALLOWED_HOSTS: frozenset[str] = frozenset({"apis.garmin.com", "healthapi.garmin.com"})
# "file" is the key of an older ConnectStats sample; the current spec key is activityFiles.
ACTIVITY_FILE_TYPES: frozenset[str] = frozenset({"activityFiles", "file"})
FILE_EXTENSIONS = {"FIT": "fit", "TCX": "tcx", "GPX": "gpx"}

PENDING, FETCHED, GONE, EXPIRED, REFUSED, FAILED = (
    "pending",
    "fetched",
    "gone",
    "expired",
    "refused",
    "failed",
)
# Items in these states are never requested again (a re-request could only hurt: 410, dupes).
DONE_STATUSES = frozenset({FETCHED, GONE, EXPIRED, REFUSED})
PROBLEM_STATUSES = frozenset({REFUSED, FAILED, EXPIRED})
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})

STATE_SCHEMA: dict[str, pl.DataType] = {
    "ping_sha256": pl.String(),
    "ping_path": pl.String(),
    "item_index": pl.Int64(),  # position in the body across all summary types, as in push ingest
    "summary_type": pl.String(),
    "user_id": pl.String(),
    "summary_id": pl.String(),
    "callback_url": pl.String(),  # redacted
    "status": pl.String(),  # pending, fetched, gone, expired, refused, failed
    "retryable": pl.Boolean(),  # a failed item is tried again by a later run
    "attempts": pl.Int64(),  # HTTP attempts over all runs (redirect hops not counted)
    "last_http_status": pl.Int64(),
    "reason": pl.String(),  # redacted
    "landed_path": pl.String(),  # relative to landing
    "updated_at": pl.Datetime("us", "UTC"),
}

REDACTED = "REDACTED"
_SECRET_NAMES = r"(?:token|secret|signature|sig|password|passwd|key|auth|code|credential)"
_SECRET_PARAM = re.compile(
    rf"(?i)([?&;][^=&#;?\s\"'<>]*{_SECRET_NAMES}[^=&#;?\s\"'<>]*=)([^&#;\s\"'<>]*)"
)
_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://)[^/?#@\s\"'<>]*@")
_UAT = re.compile(r'"userAccessToken"\s*:\s*"([^"\\]{4,})"')
_UNSAFE_URL_CHARS = re.compile(r"[\s\\\x00-\x1f\x7f]")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_THIRD_PARTY_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class TokenStoreError(ValueError):
    """The bearer-token store is unreadable or malformed (its content is never quoted)."""


class PingFetchError(RuntimeError):
    """The run stopped on an unexpected error; items finished so far are recorded."""


@dataclass(frozen=True)
class PingConfig:
    """How pings are fetched. Production defaults; tests shrink timeouts and add routes."""

    allowed_hosts: frozenset[str] = DEFAULT_ALLOWED_HOSTS
    # Tests only: send requests for an allowlisted host to a loopback base URL instead. The
    # allowlist still judges the URL from the ping, so the production checks run unchanged.
    route_hosts_for_tests: Mapping[str, str] = field(default_factory=dict)
    transport: httpx.AsyncBaseTransport | None = None  # injectable for tests
    token_store: Path | None = None  # JSON {userId: token}; None → $WEARHOUSE_GARMIN_TOKENS
    trust_env: bool = False  # True to honour HTTPS_PROXY etc.; off so .netrc can't add creds
    concurrency: int = 4
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    total_timeout_s: float = 600.0  # per attempt, so a trickling server cannot hold a slot
    max_attempts: int = 4  # per item and run
    max_total_attempts: int = 12  # per item over all runs, then the failure is final
    # Network unreachable (DNS, connect, timeouts) this many times in a row, with no answer in
    # between: start no new item this run; the rest stays pending for the next run.
    network_failures_before_pause: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    retry_after_cap_s: float = 120.0
    max_redirects: int = 3
    max_body_bytes: int = 256 * 1024 * 1024
    activity_file_ttl_s: float | None = 24 * 3600.0  # Garmin: one download within 24 h
    summary_ttl_s: float | None = None  # undocumented for summaries: try, report the status
    user_agent: str = "wearhouse-ping-fetcher"

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_attempts < 1 or self.max_redirects < 0:
            raise ValueError("concurrency and max_attempts must be >= 1, max_redirects >= 0")
        for host, base in self.route_hosts_for_tests.items():
            target = httpx.URL(base)
            if target.scheme not in ("http", "https") or target.host not in _LOOPBACK_HOSTS:
                raise ValueError(f"route for {host!r} must be a loopback http(s) base URL")


class PingFile(NamedTuple):
    """A ping body in landing, as the ledger knows it."""

    path: str  # relative to landing
    sha256: str
    received_at: datetime

    @classmethod
    def from_ledger_row(cls, row: Mapping[str, Any]) -> PingFile:
        return cls(row["path"], row["sha256"], row["received_at"])


@dataclass(frozen=True)
class PingTask:
    """One ping item to fetch."""

    ping_path: str
    ping_sha256: str
    received_at: datetime
    item_index: int
    summary_type: str
    user_id: str
    callback_url: str = field(repr=False)  # carries the pull token: never print it
    summary_id: str | None = None
    activity_id: int | None = None
    file_type: str | None = None
    start_time_s: int | None = None

    @property
    def is_activity_file(self) -> bool:
        return self.summary_type in ACTIVITY_FILE_TYPES


@dataclass(frozen=True)
class PingProblem:
    ping_path: str
    ping_sha256: str
    item_index: int | None  # None: the whole ping file
    status: str
    reason: str


@dataclass(frozen=True)
class PingFileOutcome:
    path: str
    sha256: str
    items: int
    complete: bool  # nothing left to try: the lead may mark the ping file processed
    status_counts: dict[str, int]


@dataclass
class PingReport:
    counts: dict[str, int] = field(default_factory=dict)  # this run; "skipped" = done before
    problems: list[PingProblem] = field(default_factory=list)  # current, from persisted state
    files: list[PingFileOutcome] = field(default_factory=list)
    landed: list[str] = field(default_factory=list)  # new landing paths (relative)

    def count(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1


# --- redaction -------------------------------------------------------------------------------


def redact_url(url: str | httpx.URL) -> str:
    """The URL with userinfo and token-like query values replaced: safe to log or persist."""
    return redact_text(str(url))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Redact URLs inside free text and every known secret value (longest first)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    return _SECRET_PARAM.sub(rf"\1{REDACTED}", text)


def url_secrets(url: str) -> set[str]:
    """Token-like query values of a URL, raw and percent-decoded (for literal redaction)."""
    found = set()
    for match in _SECRET_PARAM.finditer(url):
        value = match.group(2)
        found.update({value, urllib.parse.unquote_plus(value)})
    return {s for s in found if len(s) >= 4}


class _RedactingFilter(logging.Filter):
    """Rewrites log records of httpx/httpcore (which log full URLs) before any handler."""

    def __init__(self, secrets: set[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        clean = redact_text(message, self.secrets)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


@contextlib.contextmanager
def _redacting_logs(secrets: set[str]) -> Iterator[None]:
    flt = _RedactingFilter(secrets)
    loggers = [logging.getLogger(name) for name in (*_THIRD_PARTY_LOGGERS, __name__)]
    for logger in loggers:
        logger.addFilter(flt)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(flt)


# --- SSRF guard ------------------------------------------------------------------------------


def url_refusal(url: object, allowed_hosts: Iterable[str] = DEFAULT_ALLOWED_HOSTS) -> str | None:
    """None when ``url`` may be requested, else why not (without echoing any secret).

    Parsed with httpx's own parser, so what is checked is exactly what would be requested.
    """
    if not isinstance(url, str) or not url:
        return "URL is missing or not a string"
    if len(url) > 4096:
        return "URL is too long"
    if _UNSAFE_URL_CHARS.search(url):
        return "URL contains whitespace, control characters or backslashes"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "URL cannot be parsed"
    if parsed.scheme != "https":
        return f"scheme {parsed.scheme or '(none)'!r} is not https"
    if parsed.userinfo:
        return "credentials (userinfo) in the URL are refused"
    host = parsed.host
    if not host:
        return "URL has no host"
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host.strip("[]"))
        return "IP-literal hosts are refused"
    if host.rstrip(".").lower() not in {h.lower() for h in allowed_hosts}:
        return f"host {host[:100]!r} is not an allowed Garmin host"
    if parsed.port not in (None, 443):
        return f"port {parsed.port} is not the https default"
    return None


# --- parsing ---------------------------------------------------------------------------------


class _ItemError(ValueError):
    pass


def _opt_str(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    return str(value) if isinstance(value, str | int) else None


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _task(ping: PingFile, index: int, summary_type: str, item: Any) -> PingTask:
    if not isinstance(item, dict):
        raise _ItemError(f"item is a {type(item).__name__}, expected an object")
    if not is_safe_id(summary_type):
        raise _ItemError("summary type is not usable as a folder name")
    user_id = item.get("userId")
    if not isinstance(user_id, str) or not is_safe_id(user_id):
        raise _ItemError("missing or unsafe userId")
    url = item.get("callbackURL")
    if not isinstance(url, str) or not url:
        raise _ItemError("no callbackURL: not a ping item")
    return PingTask(
        ping_path=ping.path,
        ping_sha256=ping.sha256,
        received_at=ping.received_at,
        item_index=index,
        summary_type=summary_type,
        user_id=user_id,
        callback_url=url,
        summary_id=_opt_str(item.get("summaryId")),
        activity_id=_opt_int(item.get("activityId")),
        file_type=_opt_str(item.get("fileType")),
        start_time_s=_opt_int(item.get("startTimeInSeconds")),
    )


def parse_ping(raw: bytes, ping: PingFile) -> tuple[list[PingTask], list[tuple[int, str]]]:
    """Fetch tasks of one ping body, plus (item index, reason) for items that cannot be fetched.

    Raises ``PayloadError`` when the body is not an envelope at all.
    """
    body = load_envelope(raw)
    tasks: list[PingTask] = []
    refusals: list[tuple[int, str]] = []
    index = 0
    for summary_type, items in body.items():
        for item in items:
            try:
                tasks.append(_task(ping, index, summary_type, item))
            except _ItemError as exc:
                refusals.append((index, f"{summary_type[:64]}[{index}]: {exc}"))
            index += 1
    return tasks, refusals


# --- retry timing ----------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, config: PingConfig) -> float:
    """Exponential backoff with jitter, so parallel items don't retry in lockstep."""
    delay = min(config.backoff_max_s, config.backoff_base_s * 2 ** (attempt - 1))
    return delay * (0.5 + random.random() / 2)


# --- token store -----------------------------------------------------------------------------


def load_token_store(path: Path | None = None) -> dict[str, str]:
    """userId → bearer token from ``path`` or the file named by $WEARHOUSE_GARMIN_TOKENS."""
    source = path or (Path(os.environ[TOKENS_ENV]) if os.environ.get(TOKENS_ENV) else None)
    if source is None:
        return {}
    try:
        data = json.loads(source.read_text("utf-8"))
    except OSError as exc:
        raise TokenStoreError(f"cannot read token store {source}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TokenStoreError(f"token store {source} is not valid UTF-8 JSON") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
    ):
        raise TokenStoreError(f"token store {source} must map userId strings to token strings")
    return data


# --- persisted state -------------------------------------------------------------------------


def ping_state_dir(layout: LakeLayout) -> Path:
    return layout.root / "raw" / "ping_state"


def read_ping_state(layout: LakeLayout) -> pl.DataFrame:
    """All persisted item states (one Parquet file per ping body)."""
    parts = sorted(ping_state_dir(layout).glob("[!.]*.parquet"))
    if not parts:
        return pl.DataFrame(schema=STATE_SCHEMA)
    return pl.concat([pl.read_parquet(p) for p in parts], how="vertical")


def _load_rows(path: Path) -> dict[int, dict[str, Any]]:
    if not path.exists():
        return {}
    return {row["item_index"]: row for row in pl.read_parquet(path).to_dicts()}


def _save_state(path: Path, rows: Mapping[int, dict[str, Any]]) -> None:
    """Rewrite one ping file's state atomically: a crash leaves the old or the new version."""
    frame = pl.DataFrame([rows[i] for i in sorted(rows)], schema=STATE_SCHEMA)
    write_parquet_atomic(frame, path)


def _new_row(ping: PingFile, index: int, task: PingTask | None) -> dict[str, Any]:
    return {
        "ping_sha256": ping.sha256,
        "ping_path": ping.path,
        "item_index": index,
        "summary_type": task.summary_type if task else None,
        "user_id": task.user_id if task else None,
        "summary_id": task.summary_id if task else None,
        "callback_url": redact_url(task.callback_url) if task else None,
        "status": PENDING,
        "retryable": True,
        "attempts": 0,
        "last_http_status": None,
        "reason": None,
        "landed_path": None,
        "updated_at": datetime.now(UTC),
    }


def reopen_failed_items(layout: LakeLayout, ping_sha256: str) -> int:
    """Make a ping body's failed items pending again, with their attempts reset (``wearhouse
    quarantine retry``); items that were fetched, gone, expired or refused stay as they are.
    Returns how many were reopened."""
    path = ping_state_dir(layout) / f"{ping_sha256}.parquet"
    rows = _load_rows(path)
    failed = [row for row in rows.values() if row["status"] == FAILED]
    for row in failed:
        row.update(status=PENDING, retryable=True, attempts=0, reason=None)
        row.update(updated_at=datetime.now(UTC))
    if failed:
        _save_state(path, rows)
    return len(failed)


# --- landing files ---------------------------------------------------------------------------


def _temp_in(directory: Path) -> Path:
    # Hidden and ".part": the ledger ignores both, and the same folder keeps link() atomic.
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f".{uuid.uuid4().hex}.part"


def _publish(tmp: Path, final: Path) -> bool:
    """Move ``tmp`` to ``final`` unless ``final`` exists; True when it was created."""
    try:
        os.link(tmp, final)  # atomic create-if-absent: landing is never overwritten
        return True
    except FileExistsError:
        return False
    except OSError as exc:  # filesystems without hard links
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV) or final.exists():
            raise
        os.rename(tmp, final)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _publish_bytes(data: bytes, final: Path) -> bool:
    tmp = _temp_in(final.parent)
    with tmp.open("xb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return _publish(tmp, final)


def activity_file_name(task: PingTask) -> str:
    """Deterministic, so a crash after landing is detected without re-requesting the file."""
    extension = FILE_EXTENSIONS.get((task.file_type or "FIT").upper(), "bin")
    stem = task.summary_id if task.summary_id and is_safe_id(task.summary_id) else None
    stem = stem or f"ping-{task.ping_sha256[:16]}-{task.item_index}"
    return f"{stem}.{extension}"


def _sidecar(task: PingTask, sha256: str) -> bytes:
    meta = {
        "userId": task.user_id,
        "summaryType": task.summary_type,
        "summaryId": task.summary_id,
        "activityId": task.activity_id,
        "fileType": task.file_type,
        "startTimeInSeconds": task.start_time_s,
        "pingPath": task.ping_path,
        "pingSha256": task.ping_sha256,
        "itemIndex": task.item_index,
        "fileSha256": sha256,
        "fetchedAt": datetime.now(UTC).isoformat(),
    }
    return json.dumps(meta, indent=2).encode()


def _as_envelope(tmp: Path, summary_type: str) -> tuple[Path, str]:
    """Garmin's pull endpoints answer a JSON array; wrap it (bytes kept verbatim) in the push
    envelope ``{"<summaryType>": [...]}`` so the push ingest reads it unchanged."""
    with tmp.open("rb") as handle:
        head = handle.read(64)
    skip = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    digest = hashlib.sha256()
    if not head[skip:].lstrip().startswith(b"["):
        with tmp.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return tmp, digest.hexdigest()
    wrapped = _temp_in(tmp.parent)
    try:
        with tmp.open("rb") as source, wrapped.open("xb") as out:
            source.seek(skip)
            for chunk in _chunks(source, f"{{{json.dumps(summary_type)}: ".encode(), b"}"):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        wrapped.unlink(missing_ok=True)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return wrapped, digest.hexdigest()


def _chunks(source: Any, prefix: bytes, suffix: bytes) -> Iterator[bytes]:
    yield prefix
    while chunk := source.read(1 << 20):
        yield chunk
    yield suffix


# --- fetching --------------------------------------------------------------------------------


class _Refused(Exception):
    """A URL (callback or redirect target) failed the SSRF guard."""


class _Final(Exception):
    """A failure that retrying cannot fix (too large, too many redirects, …)."""


@dataclass
class _Result:
    status: str
    reason: str | None = None
    http_status: int | None = None
    landed: str | None = None
    retryable: bool = False
    attempts: int = 0


@dataclass
class _Exchange:
    status: int
    headers: httpx.Headers
    landed: str | None = None


@dataclass
class _FileCtx:
    ping: PingFile
    state_path: Path
    rows: dict[int, dict[str, Any]]
    tasks: list[PingTask] = field(default_factory=list)
    problem: str | None = None  # the whole ping file is unusable


class _Fetcher:
    def __init__(
        self,
        landing: Path,
        layout: LakeLayout,
        config: PingConfig,
        tokens: Mapping[str, str],
        now: datetime,
        report: PingReport,
    ) -> None:
        self.landing, self.layout, self.config = landing, layout, config
        self.tokens, self.now, self.report = tokens, now, report
        self.secrets: set[str] = {t for t in tokens.values() if len(t) >= 4}
        self.crash: BaseException | None = None
        self._locks: dict[Path, asyncio.Lock] = {}
        self._client: httpx.AsyncClient | None = None
        self.network_failures = 0  # consecutive, across items

    @property
    def network_down(self) -> bool:
        return self.network_failures >= self.config.network_failures_before_pause

    # preparation

    def prepare(self, ping: PingFile) -> _FileCtx:
        state_path = ping_state_dir(self.layout) / f"{ping.sha256}.parquet"
        ctx = _FileCtx(ping, state_path, _load_rows(state_path))
        try:
            raw = read_landed(self.landing, {"path": ping.path, "sha256": ping.sha256})
        except FileNotFoundError:
            ctx.problem = "ping file is missing from landing"
            return ctx
        except LandingRefused as exc:  # a link, not a regular file, or replaced in place
            ctx.problem = f"refused: {exc}"
            return ctx
        text = raw.decode("utf-8", "replace")
        self.secrets |= url_secrets(text) | set(_UAT.findall(text))
        try:
            ctx.tasks, refusals = parse_ping(raw, ping)
        except PayloadError as exc:
            ctx.problem = redact_text(str(exc), self.secrets)
            return ctx
        except Exception as exc:  # one body's failure, whatever it is, is that body's alone
            ctx.problem = redact_text(failure_reason(exc), self.secrets)
            return ctx
        before = len(ctx.rows)
        for task in ctx.tasks:
            ctx.rows.setdefault(task.item_index, _new_row(ping, task.item_index, task))
        for index, reason in refusals:
            if index in ctx.rows:
                continue
            row = _new_row(ping, index, None)
            row.update(status=REFUSED, retryable=False, reason=redact_text(reason, self.secrets))
            ctx.rows[index] = row
            self.report.count(REFUSED)
        if len(ctx.rows) != before:
            _save_state(state_path, ctx.rows)
        return ctx

    # running

    async def run(self, contexts: Sequence[_FileCtx]) -> None:
        config = self.config
        timeout = httpx.Timeout(
            config.read_timeout_s, connect=config.connect_timeout_s, pool=config.total_timeout_s
        )
        limits = httpx.Limits(max_connections=config.concurrency)
        semaphore = asyncio.Semaphore(config.concurrency)
        async with httpx.AsyncClient(
            transport=config.transport,
            timeout=timeout,
            limits=limits,
            follow_redirects=False,
            trust_env=config.trust_env,
            headers={"User-Agent": config.user_agent},
        ) as client:
            self._client = client
            jobs = [self._guarded(semaphore, ctx, t) for ctx in contexts for t in ctx.tasks]
            await asyncio.gather(*jobs)
        if self.crash is not None:
            message = redact_text(f"{type(self.crash).__name__}: {self.crash}", self.secrets)
            raise PingFetchError(f"ping fetch stopped: {message}") from None

    async def _guarded(self, semaphore: asyncio.Semaphore, ctx: _FileCtx, task: PingTask) -> None:
        """Run one item; after an unexpected error start no new item but let running ones
        finish and record themselves, so no download in flight is lost."""
        row = ctx.rows[task.item_index]
        if row["status"] in DONE_STATUSES or (row["status"] == FAILED and not row["retryable"]):
            self.report.count("skipped")
            return
        async with semaphore:
            if self.crash is not None:
                return
            if self.network_down:  # leave it pending: retried on the next run
                self.report.count("deferred")
                return
            try:
                await self._process(ctx, task, row)
            except Exception as exc:
                self.crash = self.crash or exc

    async def _process(self, ctx: _FileCtx, task: PingTask, row: dict[str, Any]) -> None:
        try:
            result = await self._fetch(task, row["attempts"])
        except OSError:  # our own storage (disk full, …): the run must fail
            raise
        except Exception as exc:  # this item's alone: refused, the others go on
            result = _Result(FAILED, reason=failure_reason(exc))
        reason = redact_text(result.reason, self.secrets) if result.reason else None
        row.update(
            status=result.status,
            retryable=result.retryable,
            attempts=row["attempts"] + result.attempts,
            last_http_status=result.http_status,
            reason=reason,
            landed_path=result.landed or row["landed_path"],
            updated_at=datetime.now(UTC),
        )
        _save_state(ctx.state_path, ctx.rows)
        self.report.count(result.status)
        log.info(
            "ping %s item %d (%s): %s%s",
            task.ping_path,
            task.item_index,
            task.summary_type,
            result.status,
            f" — {reason}" if reason else "",
        )

    async def _fetch(self, task: PingTask, prior_attempts: int) -> _Result:
        if not task.is_activity_file:
            return await self._fetch_checked(task, prior_attempts)
        target = self._activity_target(task)
        lock = self._locks.setdefault(target, asyncio.Lock())
        async with lock:  # two pings for the same file: the second finds it landed
            # Checked first: a file landed just before a crash counts even once expired.
            if target.exists():
                return _Result(FETCHED, reason="already landed", landed=self._relative(target))
            return await self._fetch_checked(task, prior_attempts)

    async def _fetch_checked(self, task: PingTask, prior_attempts: int) -> _Result:
        expired = self._expired(task)
        if expired:
            return _Result(EXPIRED, reason=expired)
        why = url_refusal(task.callback_url, self.config.allowed_hosts)
        if why:
            return _Result(REFUSED, reason=f"callbackURL {redact_url(task.callback_url)}: {why}")
        return await self._fetch_with_retries(task, prior_attempts)

    async def _fetch_with_retries(self, task: PingTask, prior_attempts: int) -> _Result:
        config = self.config
        last_reason, last_status, attempts = "not attempted", None, 0
        for attempt in range(1, config.max_attempts + 1):
            if prior_attempts + attempts >= config.max_total_attempts:
                reason = f"gave up after {prior_attempts + attempts} attempts: {last_reason}"
                return _Result(FAILED, reason, last_status, attempts=attempts)
            attempts += 1
            delay = backoff_delay(attempt, config)
            try:
                async with asyncio.timeout(config.total_timeout_s):
                    exchange = await self._exchange(task)
            except _Refused as exc:
                return _Result(REFUSED, reason=str(exc), attempts=attempts)
            except _Final as exc:
                return _Result(FAILED, reason=str(exc), attempts=attempts)
            except (httpx.RequestError, TimeoutError) as exc:  # network, decoding, timeouts
                detail = redact_text(str(exc), self.secrets)[:200]
                last_reason, last_status = f"{type(exc).__name__} {detail}".strip(), None
                self.network_failures += 1
                if self.network_down:
                    break
            else:
                self.network_failures = 0
                status = exchange.status
                if exchange.landed:
                    return _Result(FETCHED, None, status, exchange.landed, attempts=attempts)
                if status == 410:
                    reason = "HTTP 410: already downloaded once, or withdrawn"
                    return _Result(GONE, reason, status, attempts=attempts)
                if status != 429 and status < 500:
                    return _Result(FAILED, f"HTTP {status}", status, attempts=attempts)
                last_reason, last_status = f"HTTP {status}", status
                wait = parse_retry_after(exchange.headers.get("retry-after"))
                if wait is not None:
                    delay = min(wait, config.retry_after_cap_s)
            if attempt < config.max_attempts:
                await asyncio.sleep(delay)
        reason = f"{last_reason} after {attempts} attempts"
        return _Result(FAILED, reason, last_status, retryable=True, attempts=attempts)

    async def _exchange(self, task: PingTask) -> _Exchange:
        """One attempt: GET, following only redirects that pass the guard; land a 2xx body."""
        assert self._client is not None
        url = httpx.URL(task.callback_url)
        for _hop in range(self.config.max_redirects + 1):
            request = self._client.build_request("GET", self._wire(url), headers=self._auth(task))
            response = await self._client.send(request, stream=True)
            try:
                status = response.status_code
                if status in REDIRECT_CODES:
                    url = self._redirect_target(url, response)
                    continue
                if 200 <= status < 300:
                    landed = await self._land(task, response)
                    return _Exchange(status, response.headers, landed)
                return _Exchange(status, response.headers)
            finally:
                await response.aclose()
        raise _Final(f"more than {self.config.max_redirects} redirects")

    def _redirect_target(self, url: httpx.URL, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("location")
        if not location:
            raise _Final(f"HTTP {response.status_code} redirect without a Location")
        try:
            # Relative locations resolve against the URL from the ping, never the test route.
            target: httpx.URL | None = url.join(location)
        except httpx.InvalidURL:
            target = None
        why = (
            url_refusal(location)  # raw checks: whitespace, backslashes, …
            if target is None or _UNSAFE_URL_CHARS.search(location)
            else url_refusal(str(target), self.config.allowed_hosts)
        )
        if why or target is None:
            shown = redact_text(str(target or location)[:300], self.secrets)
            raise _Refused(f"redirect to {shown} refused: {why or 'URL cannot be parsed'}")
        return target

    def _wire(self, url: httpx.URL) -> httpx.URL:
        """Where the request really goes: the URL itself, or a loopback stand-in in tests."""
        base = self.config.route_hosts_for_tests.get(url.host.rstrip(".").lower())
        if base is None:
            return url
        target = httpx.URL(base)
        return url.copy_with(scheme=target.scheme, host=target.host, port=target.port)

    def _auth(self, task: PingTask) -> dict[str, str]:
        token = self.tokens.get(task.user_id)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _expired(self, task: PingTask) -> str | None:
        ttl = (
            self.config.activity_file_ttl_s if task.is_activity_file else self.config.summary_ttl_s
        )
        if ttl is None:
            return None
        received = task.received_at
        if received.tzinfo is None:
            received = received.replace(tzinfo=UTC)
        age = (self.now - received).total_seconds()
        if age <= ttl:
            return None
        return f"ping received {age / 3600:.1f} h ago, past the {ttl / 3600:.1f} h download window"

    # landing

    def _activity_target(self, task: PingTask) -> Path:
        return self.landing / "fit" / task.user_id / activity_file_name(task)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.landing).as_posix()

    async def _land(self, task: PingTask, response: httpx.Response) -> str:
        directory = (
            self._activity_target(task).parent
            if task.is_activity_file
            else self.landing / "garmin" / "fetched" / task.summary_type
        )
        tmp = _temp_in(directory)
        try:
            sha256 = await self._stream_to(response, tmp)
            if task.is_activity_file:
                target = self._activity_target(task)
                # Sidecar first: whoever sees the file can already link it to its activity.
                _publish_bytes(_sidecar(task, sha256), target.with_name(f"{target.name}.ping.json"))
            else:
                tmp, sha256 = _as_envelope(tmp, task.summary_type)
                target = directory / f"{sha256}.json"
            if _publish(tmp, target):
                self.report.landed.append(self._relative(target))
        finally:
            tmp.unlink(missing_ok=True)
        return self._relative(target)

    async def _stream_to(self, response: httpx.Response, tmp: Path) -> str:
        digest, size = hashlib.sha256(), 0
        with tmp.open("xb") as out:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.config.max_body_bytes:
                    raise _Final(f"body larger than {self.config.max_body_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return digest.hexdigest()

    # results

    def finish(self, ctx: _FileCtx) -> None:
        """Report the file's outcome and rewrite its quarantine from its state, so items that
        succeed on a later run leave the quarantine and old problems are never forgotten."""
        batch = QuarantineBatch(ctx.ping.path, ctx.ping.sha256, STAGE)
        counts: dict[str, int] = {}
        if ctx.problem:
            batch.add(ctx.problem)
            self.report.problems.append(
                PingProblem(ctx.ping.path, ctx.ping.sha256, None, REFUSED, ctx.problem)
            )
        for index in sorted(ctx.rows):
            row = ctx.rows[index]
            counts[row["status"]] = counts.get(row["status"], 0) + 1
            if row["status"] in PROBLEM_STATUSES:
                reason = f"{row['status']}: {row['reason']}"
                batch.add(reason, index)
                self.report.problems.append(
                    PingProblem(ctx.ping.path, ctx.ping.sha256, index, row["status"], reason)
                )
        batch.write(self.layout)
        open_items = counts.get(PENDING, 0) + sum(
            1 for r in ctx.rows.values() if r["status"] == FAILED and r["retryable"]
        )
        self.report.files.append(
            PingFileOutcome(ctx.ping.path, ctx.ping.sha256, len(ctx.rows), not open_items, counts)
        )


async def afetch_pings(
    landing: Path,
    layout: LakeLayout,
    ping_files: Sequence[PingFile | tuple[str, str, datetime]],
    config: PingConfig | None = None,
    *,
    now: datetime | None = None,
) -> PingReport:
    """Async form of :func:`fetch_pings`, for callers that already run an event loop."""
    config = config or PingConfig()
    report = PingReport()
    fetcher = _Fetcher(
        landing,
        layout,
        config,
        load_token_store(config.token_store),
        now or datetime.now(UTC),
        report,
    )
    unique = {p.sha256: PingFile(*p) for p in ping_files}  # same body at two paths: once
    with _redacting_logs(fetcher.secrets):
        contexts = [fetcher.prepare(ping) for ping in unique.values()]
        await fetcher.run(contexts)
        for ctx in contexts:
            fetcher.finish(ctx)
    return report


def fetch_pings(
    landing: Path,
    layout: LakeLayout,
    ping_files: Sequence[PingFile | tuple[str, str, datetime]],
    config: PingConfig | None = None,
    *,
    now: datetime | None = None,
) -> PingReport:
    """Fetch every not-yet-done item of the given ping bodies into landing.

    Idempotent: items already fetched, gone, expired or refused are skipped using the state in
    ``<lake>/raw/ping_state/<ping sha256>.parquet``. Refused, failed and expired items are
    written to the quarantine (stage ``garmin_ping``). Raises ``PingFetchError`` only on an
    unexpected error (after recording every item that finished).
    """
    return asyncio.run(afetch_pings(landing, layout, ping_files, config, now=now))
