"""The webhook receiver as a plain ASGI app: store the body durably, then answer 200.

Nothing is parsed on the request path: a body must only look like a JSON object (first and
last non-blank bytes ``{`` and ``}``); the pipeline parses it later, and quarantines what is
broken inside. The app is one small handler rather than a framework's router and middleware
stack: it serves five routes, and every microsecond of per-request overhead is throughput
(every body is fsynced before its answer).

Routes: ``POST /garmin/push``, ``POST /garmin/ping``, each also as ``/<summaryType>`` (so each
Garmin endpoint can have its own URL; the type is only logged, never used in a path), and
``GET /health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import logging
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from pipelines.receiver.config import (
    Address,
    ReceiverConfig,
    in_networks,
    parse_address,
)
from pipelines.receiver.landing import LandingWriter, PendingBody, hold_shared_lock

log = logging.getLogger("wearhouse.receiver")

_ROUTE = re.compile(r"^/garmin/(push|ping)(?:/([A-Za-z]{1,64}))?/?$")
_BLANK = b" \t\r\n"
# Bodies are written once this much is buffered (bounded memory per request), and in one go
# when they arrive whole before that (the usual case: one thread hop per request).
FLUSH_BYTES = 1 << 20
_STORAGE_FULL = {errno.ENOSPC, errno.EDQUOT}
IO_THREADS = 32


def _json(text: str) -> bytes:
    return ('{"status": "' + text + '"}').encode()


class ReceiverApp:
    """ASGI callable; build it with a frozen ``ReceiverConfig``."""

    def __init__(self, config: ReceiverConfig, writer: LandingWriter | None = None) -> None:
        self.config = config
        self.writer = writer or LandingWriter(config.landing)
        self._executor: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None

    def __reduce__(self):
        # Worker processes are spawned with a pickled copy: rebuilt from the frozen config.
        return (type(self), (self.config,))

    # -- ASGI entry points ------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._in_thread(self.writer.prepare)
                    # Each serving process (workers too) holds the receivers' lock.
                    self._lock_fd = await self._in_thread(hold_shared_lock, self.config.landing)
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._executor is not None:
                    self._executor.shutdown(wait=True)
                    self._executor = None
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope, receive, send) -> None:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        reply = _Reply(send, request_id)
        client = self._client_address(scope)
        summary_type = None
        received = 0
        note = ""
        path = scope["path"]
        match = None
        try:
            match = _ROUTE.match(path)
            if match is not None:
                summary_type = match.group(2)
                received, note = await self._delivery(
                    scope, receive, reply, match.group(1), client, request_id
                )
            elif path == "/health":
                if scope["method"] in ("GET", "HEAD"):
                    await reply(200, _json("ok"))
                else:
                    await reply(405, _json("method not allowed"), allow=b"GET, HEAD")
            else:
                await reply(404, _json("not found"))
        except Exception:
            note = "error"
            log.exception("rid=%s unexpected failure", request_id)
            if not reply.started:
                await reply(500, _json("error"), close=True)
        finally:
            log.info(
                "rid=%s %s %s status=%s bytes=%d ms=%.1f client=%s%s%s",
                request_id,
                scope["method"],
                path if match is not None or path == "/health" else repr(path[:200]),
                reply.status or "-",
                received,
                (time.perf_counter() - started) * 1000,
                client or "-",
                f" type={summary_type}" if summary_type else "",
                f" {note}" if note else "",
            )

    # -- one delivery ---------------------------------------------------------------------

    async def _delivery(
        self, scope, receive, reply: _Reply, kind: str, client: Address | None, request_id: str
    ) -> tuple[int, str]:
        """Checks, then the body streamed to disk; returns (bytes received, log note)."""
        config = self.config
        if scope["method"] != "POST":
            await reply(405, _json("method not allowed"), allow=b"POST")
            return 0, ""
        if config.allow and not in_networks(client, config.allow):
            await reply(403, _json("forbidden"), close=True)
            return 0, "source not allowed"
        headers = scope["headers"]
        if config.client_id is not None:
            given = _header(headers, b"garmin-client-id")
            if given is None or not hmac.compare_digest(given, config.client_id.encode()):
                await reply(401, _json("unauthorized"), close=True)
                return 0, "client id missing" if given is None else "client id mismatch"
        length = _header(headers, b"content-length")
        if length is not None:
            if not length.isdigit():
                await reply(400, _json("bad content-length"), close=True)
                return 0, ""
            if int(length) > config.max_body_bytes:
                await reply(413, _json("body too large"), close=True)
                return 0, f"declared {int(length)} bytes"
        return await self._receive_body(receive, reply, kind, request_id)

    async def _receive_body(
        self, receive, reply: _Reply, kind: str, request_id: str
    ) -> tuple[int, str]:
        config = self.config
        received_at = datetime.now(UTC)
        deadline = asyncio.get_running_loop().time() + config.body_timeout_s
        chunks: list[bytes] = []
        buffered = total = 0
        first = last = None
        pending: PendingBody | None = None
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    await self._abort(pending)
                    await reply(408, _json("body too slow"), close=True)
                    return total, "timeout"
                if message["type"] != "http.request":  # the client went away: nothing to answer
                    await self._abort(pending)
                    return total, "client disconnected"
                body = message.get("body", b"")
                if body:
                    total += len(body)
                    if total > config.max_body_bytes:
                        await self._abort(pending)
                        await reply(413, _json("body too large"), close=True)
                        return total, ""
                    if first is None:
                        stripped = body.lstrip(_BLANK)
                        if stripped:
                            first = stripped[0]
                            if first != 0x7B:  # "{"
                                await self._abort(pending)
                                await reply(400, _json("not a JSON object"), close=True)
                                return total, ""
                    stripped = body.rstrip(_BLANK)
                    if stripped:
                        last = stripped[-1]
                    chunks.append(body)
                    buffered += len(body)
                if not message.get("more_body", False):
                    break
                if buffered >= FLUSH_BYTES:
                    if pending is None:
                        pending = await self._in_thread(
                            self.writer.begin, kind, received_at, request_id
                        )
                    await self._in_thread(pending.write, chunks)
                    chunks, buffered = [], 0
            if first is None or last != 0x7D:  # "}"
                await self._abort(pending)
                await reply(400, _json("empty" if first is None else "not a JSON object"))
                return total, ""
            if pending is None:
                await self._in_thread(self.writer.store, kind, received_at, request_id, chunks)
            else:
                await self._in_thread(pending.write, chunks)
                await self._in_thread(pending.commit)
                pending = None
        except OSError as exc:
            await self._abort(pending)
            full = exc.errno in _STORAGE_FULL
            if not full:
                log.error("rid=%s storage error: %s", request_id, exc)
            await reply(503 if full else 500, _json("storage unavailable"), retry_after=full)
            return total, "storage full" if full else "storage error"
        except BaseException:
            if pending is not None:
                pending.abort()  # cancelled: no await possible, and no 200 was given
            raise
        await reply(200, _json("stored"))
        return total, ""

    # -- helpers --------------------------------------------------------------------------

    def _client_address(self, scope) -> Address | None:
        """The peer, or when the peer is a trusted proxy, the nearest untrusted address of
        X-Forwarded-For (right to left: only what trusted hops appended is believed)."""
        peer = scope.get("client")
        address = parse_address(peer[0]) if peer else None
        trusted = self.config.trusted_proxies
        if not trusted or not in_networks(address, trusted):
            return address
        forwarded = [
            item.strip()
            for name, value in scope["headers"]
            if name == b"x-forwarded-for"
            for item in value.decode("latin-1").split(",")
        ]
        while forwarded and in_networks(address, trusted):
            address = parse_address(forwarded.pop())
        return address

    async def _in_thread(self, function, *args):
        if self._executor is None:
            self._executor = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="receiver-io")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def _abort(self, pending: PendingBody | None) -> None:
        if pending is not None:
            with contextlib.suppress(OSError):
                await self._in_thread(pending.abort)


def _header(headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


class _Reply:
    """Sends the one response of a request and remembers its status (for the log line)."""

    def __init__(self, send, request_id: str) -> None:
        self._send = send
        self._request_id = request_id.encode()
        self.status: int | None = None

    @property
    def started(self) -> bool:
        return self.status is not None

    async def __call__(
        self,
        status: int,
        body: bytes,
        *,
        close: bool = False,
        allow: bytes | None = None,
        retry_after: bool = False,
    ) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", self._request_id),
        ]
        if allow is not None:
            headers.append((b"allow", allow))
        if retry_after:
            headers.append((b"retry-after", b"60"))
        if close:
            # The rest of an unread body is not worth reading: end the connection.
            headers.append((b"connection", b"close"))
        self.status = status
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})
