"""`wearhouse serve`: the webhook receiver, on loopback (a real uvicorn server in a thread)."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import re
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest
import uvicorn

from pipelines.receiver import landing as receiver_landing
from pipelines.receiver.app import FLUSH_BYTES, ReceiverApp
from pipelines.receiver.config import ConfigError, ReceiverConfig, parse_networks
from pipelines.receiver.landing import LandingWriter, PendingBody, receiver_lock
from pipelines.receiver.server import uvicorn_config

NAME = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{32}\.json$")


class Server:
    """A receiver on 127.0.0.1 with an ephemeral port, served by uvicorn in a thread."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.app = ReceiverApp(config)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn_config(self.app, "127.0.0.1", 0))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(20)
        self._sock.close()

    def post(self, path: str, content: bytes = b"{}", **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, content=content, timeout=20, **kwargs)

    def files(self) -> list[Path]:
        """Everything under landing/garmin except the receiver's lock file (temp files too)."""
        root = self.config.landing / "garmin"
        return sorted(
            p for p in root.rglob("*") if p.is_file() and p.name != receiver_landing.LOCK_NAME
        )


@pytest.fixture
def serve(settings):
    """``serve(**config)`` → a running receiver on the test's landing."""
    servers = []

    def start(**options) -> Server:
        server = Server(ReceiverConfig(landing=settings.landing, **options)).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def server(serve) -> Server:
    return serve()


def today() -> str:
    return f"{datetime.now(UTC):%Y-%m-%d}"


# -- what lands ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/garmin/push", "push"),
        ("/garmin/push/dailies", "push"),
        ("/garmin/push/activityDetails/", "push"),
        ("/garmin/ping", "ping"),
        ("/garmin/ping/activityFiles", "ping"),
    ],
)
def test_a_body_lands_whole_under_its_kind_and_date(server, path, kind):
    body = b' \n{"dailies": [{"userId": "u1", "summaryId": "s1"}]}\n'
    response = server.post(path, body, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.headers["x-request-id"]
    (landed,) = server.files()
    assert landed.parent == server.config.landing / "garmin" / kind / today()
    assert NAME.match(landed.name)
    assert response.headers["x-request-id"] in landed.name
    assert landed.read_bytes() == body


def test_each_body_gets_its_own_file(server):
    bodies = [b'{"n": %d}' % i for i in range(20)]
    for body in bodies:
        assert server.post("/garmin/push/epochs", body).status_code == 200
    assert sorted(p.read_bytes() for p in server.files()) == sorted(bodies)


def test_a_chunked_body_larger_than_the_flush_size_lands_whole(server):
    body = b'{"pad": "' + b"x" * (3 * FLUSH_BYTES + 12345) + b'"}'
    chunks = (body[i : i + 100_000] for i in range(0, len(body), 100_000))
    response = server.post("/garmin/push", chunks)  # a generator: sent chunked
    assert response.status_code == 200
    (landed,) = server.files()
    assert landed.read_bytes() == body


# -- refusals: nothing written --------------------------------------------------------------


def test_too_large_by_content_length_is_413_and_nothing_is_written(serve):
    server = serve(max_body_bytes=1024)
    assert server.post("/garmin/push", b'{"a": "' + b"x" * 4096 + b'"}').status_code == 413
    assert server.post("/garmin/push", b'{"a": "' + b"x" * 900 + b'"}').status_code == 200
    assert len(server.files()) == 1


@pytest.mark.parametrize(
    "body",
    [b"", b"  \n", b"hello", b"[1, 2]", b'{"a": 1', b'"text"', b"null", b'{"a": [1]} x'],
)
def test_empty_or_not_a_json_object_is_400_and_nothing_is_written(server, body):
    assert server.post("/garmin/push", body).status_code == 400
    assert server.files() == []


def test_disk_full_mid_write_is_503_and_leaves_no_debris(server, monkeypatch):
    real_write = PendingBody.write

    def full(self, chunks):
        real_write(self, [chunks[0][:10]])  # part of the body is in the temp file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PendingBody, "write", full)
    response = server.post("/garmin/push", b'{"dailies": []}')
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert server.files() == []


def test_a_failing_flush_is_503_and_leaves_no_debris(server, monkeypatch):
    def full(fd):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(receiver_landing, "_datasync", full)
    assert server.post("/garmin/ping", b'{"dailies": []}').status_code == 503
    assert server.files() == []


# -- who may post ---------------------------------------------------------------------------


def test_the_allowlist_refuses_other_sources(serve):
    assert serve(allow=parse_networks("10.0.0.0/8")).post("/garmin/push").status_code == 403
    assert serve(allow=parse_networks("127.0.0.0/8")).post("/garmin/push").status_code == 200


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(serve):
    garmin = parse_networks("203.0.113.0/24")
    behind_proxy = serve(allow=garmin, trusted_proxies=parse_networks("127.0.0.1/32"))

    def post(server, forwarded=None):
        headers = {"x-forwarded-for": forwarded} if forwarded else {}
        return server.post("/garmin/push", headers=headers).status_code

    assert post(behind_proxy, "203.0.113.7") == 200
    assert post(behind_proxy) == 403  # the proxy itself is not Garmin
    assert post(behind_proxy, "198.51.100.1") == 403
    # A client can put anything first; only what the trusted proxy appended counts.
    assert post(behind_proxy, "203.0.113.7, 198.51.100.1") == 403
    assert post(behind_proxy, "not-an-address") == 403
    not_trusted = serve(allow=garmin, trusted_proxies=parse_networks("10.0.0.0/8"))
    assert post(not_trusted, "203.0.113.7") == 403


def test_the_client_id_header_is_checked_when_configured(serve):
    server = serve(client_id="partner-key")
    assert server.post("/garmin/push").status_code == 401
    assert server.post("/garmin/push", headers={"garmin-client-id": "other"}).status_code == 401
    right = {"garmin-client-id": "partner-key"}
    assert server.post("/garmin/push", headers=right).status_code == 200
    assert len(server.files()) == 1


def test_logs_carry_a_request_id_and_never_the_body_or_tokens(serve, caplog):
    server = serve(client_id="partner-key-secret")
    with caplog.at_level(logging.INFO, logger="wearhouse.receiver"):
        response = server.post(
            "/garmin/push/dailies?token=query-secret",
            b'{"dailies": [{"userAccessToken": "body-secret"}]}',
            headers={"garmin-client-id": "partner-key-secret", "authorization": "Bearer b-secret"},
        )
        assert response.status_code == 200
        deadline = time.monotonic() + 5
        while "status=200" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
    line = next(r.getMessage() for r in caplog.records if "status=200" in r.getMessage())
    assert f"rid={response.headers['x-request-id']}" in line
    assert "POST /garmin/push/dailies" in line and "type=dailies" in line
    for secret in ("partner-key-secret", "query-secret", "body-secret", "b-secret"):
        assert secret not in caplog.text


# -- routes ---------------------------------------------------------------------------------


def test_health_unknown_paths_and_methods(server):
    assert httpx.get(server.url + "/health").status_code == 200
    assert httpx.get(server.url + "/nope").status_code == 404
    assert server.post("/garmin/push/not-a-type").status_code == 404
    assert server.post("/garmin/push/" + "a" * 65).status_code == 404
    assert server.post("/garmin/push/..%2F..%2Fetc").status_code == 404
    assert server.post("/garmin/other").status_code == 404
    response = httpx.get(server.url + "/garmin/push")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert httpx.put(server.url + "/garmin/ping/dailies", content=b"{}").status_code == 405
    assert server.files() == []


# -- the app's streaming path, driven directly (no network) ----------------------------------


def call_app(app: ReceiverApp, chunks: list[bytes], headers=(), path="/garmin/push"):
    """One request through the ASGI app; returns the status sent (None when none was)."""
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": list(headers),
        "client": ("127.0.0.1", 5555),
    }
    asyncio.run(app(scope, receive, send))
    return next((m["status"] for m in sent if m["type"] == "http.response.start"), None)


def landing_files(landing: Path) -> list[Path]:
    return [p for p in (landing / "garmin").rglob("*") if p.is_file()]


def test_streamed_past_the_limit_is_413_and_the_started_temp_file_is_removed(settings):
    app = ReceiverApp(ReceiverConfig(settings.landing, max_body_bytes=3 * FLUSH_BYTES))
    chunks = [b"{" + b" " * (FLUSH_BYTES - 1)] * 4 + [b"}"]
    assert call_app(app, chunks) == 413
    assert landing_files(settings.landing) == []


def test_disk_full_after_a_flush_is_503_without_debris(settings, monkeypatch):
    app = ReceiverApp(ReceiverConfig(settings.landing))
    real_write = PendingBody.write
    calls = []

    def fills_up(self, chunks):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, chunks)

    monkeypatch.setattr(PendingBody, "write", fills_up)
    chunks = [b"{" + b" " * (FLUSH_BYTES - 1), b" " * FLUSH_BYTES, b"}"]
    assert call_app(app, chunks) == 503
    assert landing_files(settings.landing) == []


def test_a_client_that_goes_away_leaves_nothing(settings):
    app = ReceiverApp(ReceiverConfig(settings.landing))
    chunks = [b"{" + b" " * (FLUSH_BYTES - 1), b" " * 10]
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/garmin/push", "headers": []}
    asyncio.run(app(scope, receive, send))
    assert sent == []
    assert landing_files(settings.landing) == []


def test_a_stalled_body_times_out_with_408_and_leaves_nothing(settings):
    app = ReceiverApp(ReceiverConfig(settings.landing, body_timeout_s=0.2))
    first = {"type": "http.request", "body": b"{" + b" " * FLUSH_BYTES, "more_body": True}
    sent = []

    async def receive():
        nonlocal first
        if first is not None:
            message, first = first, None
            return message
        await asyncio.sleep(10)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/garmin/push", "headers": []}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 408
    assert landing_files(settings.landing) == []


# -- crash leftovers and settings -----------------------------------------------------------


def test_the_first_receiver_to_start_removes_a_killed_ones_temp_files(settings):
    writer = LandingWriter(settings.landing)
    pending = writer.begin("push", datetime.now(UTC), "ab" * 16)
    pending.write([b'{"half'])
    os.close(pending.fd)  # as a kill leaves it: a temp file, never renamed
    (leftover,) = receiver_landing.temp_leftovers(settings.landing)
    with receiver_lock(settings.landing, busy_min_age_s=3600) as removed:
        assert removed == [leftover]
    assert not leftover.exists()


def test_the_ledger_and_the_sensor_never_see_a_body_being_written(settings):
    from pipelines.lake.ledger import landing_files as ledger_files

    writer = LandingWriter(settings.landing)
    pending = writer.begin("push", datetime.now(UTC), "ef" * 16)
    pending.write([b'{"dailies": [{"half'])
    assert pending.temp.exists()
    assert ledger_files(settings.landing) == []
    final = pending.commit()
    assert ledger_files(settings.landing) == [final]


def test_a_second_receiver_leaves_young_temp_files_of_a_running_one(settings):
    writer = LandingWriter(settings.landing)
    with receiver_lock(settings.landing, busy_min_age_s=3600):
        pending = writer.begin("ping", datetime.now(UTC), "cd" * 16)
        with receiver_lock(settings.landing, busy_min_age_s=3600) as removed:
            assert removed == []
        assert pending.temp.exists()
        pending.abort()


def test_the_lock_is_shared_while_serving(settings):
    with receiver_lock(settings.landing, busy_min_age_s=60):
        fd = os.open(settings.landing / "garmin" / receiver_landing.LOCK_NAME, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_config_from_the_environment(tmp_path):
    config = ReceiverConfig.resolve(
        tmp_path,
        {
            "WEARHOUSE_MAX_BODY_MB": "0.5",
            "WEARHOUSE_RECEIVER_ALLOW": "192.0.2.0/24, 2001:db8::/32",
            "WEARHOUSE_RECEIVER_TRUSTED_PROXIES": "10.0.0.1",
            "WEARHOUSE_RECEIVER_CLIENT_ID": "key",
        },
    )
    assert config.max_body_bytes == 512 * 1024
    assert [str(n) for n in config.allow] == ["192.0.2.0/24", "2001:db8::/32"]
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.1/32"]
    assert config.client_id == "key"
    assert config.workers == 1
    assert ReceiverConfig.resolve(tmp_path, {"WEARHOUSE_RECEIVER_WORKERS": "2"}).workers == 2
    assert ReceiverConfig.resolve(tmp_path, {}).max_body_bytes == 100 * 2**20
    for bad in (
        {"WEARHOUSE_MAX_BODY_MB": "-1"},
        {"WEARHOUSE_MAX_BODY_MB": "lots"},
        {"WEARHOUSE_RECEIVER_ALLOW": "10.0.0.0/33"},
        {"WEARHOUSE_RECEIVER_TRUSTED_PROXIES": "proxy.example"},
        {"WEARHOUSE_RECEIVER_WORKERS": "1.5"},
        {"WEARHOUSE_RECEIVER_BODY_TIMEOUT_S": "0"},
    ):
        with pytest.raises(ConfigError):
            ReceiverConfig.resolve(tmp_path, bad)


def test_serve_refuses_a_bad_setting(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.setenv("WEARHOUSE_RECEIVER_ALLOW", "not-a-network")
    assert main(["serve", "--home", str(tmp_path), "--port", "0"]) == 2
    assert "WEARHOUSE_RECEIVER_ALLOW" in capsys.readouterr().err


# -- receiver → sensor → run ---------------------------------------------------------------


def test_delivered_bodies_are_picked_up_by_the_sensor_and_ingested(server, settings, fixtures):
    from pipelines.cli import main
    from pipelines.definitions import build_definitions

    garmin = fixtures / "garmin"
    deliveries = {
        "/garmin/push/activities": garmin / "openwearables_push_activities.json",
        "/garmin/push/activityDetails": (
            garmin / "synthetic_push_activityDetails_cycling_power.json"
        ),
        "/garmin/push/dailies": garmin / "synthetic_specshaped_dailies.json",
    }
    for path, fixture in deliveries.items():
        assert server.post(path, fixture.read_bytes()).status_code == 200

    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("landing_sensor")
    with dg.build_sensor_context(resources={"lake": defs.resources["lake"]}) as context:
        result = sensor(context)
    assert len(result.run_requests) == 1
    assert result.run_requests[0].tags["wearhouse/landing_files"] == str(len(deliveries))

    assert main(["run", "--home", str(settings.home)]) == 0
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        activity_ids = {r[0] for r in con.execute("SELECT activity_id FROM sessions").fetchall()}
        dailies = con.execute("SELECT count(*) FROM daily_summaries").fetchone()[0]
        ingested = {
            r[0] for r in con.execute("SELECT DISTINCT input_path FROM quarantine").fetchall()
        }
    assert {21047282990, 21500000001} <= activity_ids
    assert dailies > 0
    assert not ingested  # nothing the receiver wrote was refused
