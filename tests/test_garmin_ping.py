"""Ping fetcher against a real HTTP server on 127.0.0.1 that behaves like Garmin's callbacks.

Ping bodies carry real-looking ``https://apis.garmin.com/...`` URLs; ``route_hosts_for_tests``
sends those requests to the local server, so the production SSRF checks judge every URL.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pytest

from pipelines.garmin import ping
from pipelines.garmin.ping import (
    PingConfig,
    PingFetchError,
    PingFile,
    TokenStoreError,
    fetch_pings,
    load_token_store,
    parse_ping,
    parse_retry_after,
    read_ping_state,
    redact_url,
    url_refusal,
)
from pipelines.garmin.push import parse_push
from pipelines.lake.layout import LakeLayout
from pipelines.lake.ledger import current_files, register_landing, sha256_file
from pipelines.lake.quarantine import read_quarantine
from pipelines.settings import Settings
from tests.conftest import FIXTURES, land

PULL_TOKEN = "PULLtok-9f8e7d6c5b4a"
BEARER = "BEARERsecret-0a1b2c3d"
USER = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
FIT_BYTES = (FIXTURES / "fit" / "activity_1378220136.fit").read_bytes()
FILE_PATH = "/wellness-api/rest/activityFile"
DAILIES = [{"userId": USER, "summaryId": "x0a1b2c3-695c3e00", "steps": 4321}]

Reply = tuple[int, dict[str, str], bytes, float]  # status, headers, body, delay before replying


def ok(body: bytes = FIT_BYTES, delay: float = 0.0) -> Reply:
    return (200, {}, body, delay)


def status(code: int, headers: dict[str, str] | None = None) -> Reply:
    return (code, headers or {}, b"", 0.0)


class FakeGarmin:
    """Scripted replies per path (the last reply repeats) and a log of every request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scripts: dict[str, list[Reply]] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path?query, Authorization)
        self.base = ""

    def script(self, path: str, *replies: Reply) -> str:
        self.scripts[path] = list(replies)
        return path

    def one_time_file(self, file_id: str) -> str:
        """Like Garmin's activityFile: downloadable once, then 410."""
        return self.script(f"{FILE_PATH}/{file_id}", ok(), status(410))

    def reply_for(self, path: str) -> Reply:
        with self.lock:
            replies = self.scripts.get(path)
            if not replies:
                return status(404)
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for target, _ in self.requests if urlsplit(target).path == path)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        garmin: FakeGarmin = self.server.garmin  # type: ignore[attr-defined]
        with garmin.lock:
            garmin.requests.append((self.path, self.headers.get("Authorization")))
        code, headers, body, delay = garmin.reply_for(urlsplit(self.path).path)
        time.sleep(delay)
        try:
            self.send_response(code)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def garmin() -> Iterator[FakeGarmin]:
    fake = FakeGarmin()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.garmin = fake  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def make_config(garmin: FakeGarmin, **overrides) -> PingConfig:
    options = {
        "route_hosts_for_tests": {
            "apis.garmin.com": garmin.base,
            "healthapi.garmin.com": garmin.base,
        },
        "concurrency": 2,
        "connect_timeout_s": 1.0,
        "read_timeout_s": 0.4,
        "total_timeout_s": 3.0,
        "max_attempts": 3,
        "backoff_base_s": 0.02,
        "backoff_max_s": 0.1,
        "retry_after_cap_s": 2.0,
    }
    options.update(overrides)
    return PingConfig(**options)


def callback(path: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {**params, "token": PULL_TOKEN}.items())
    return f"https://apis.garmin.com{path}?{query}"


def file_item(file_id: str, url: str | None = None, user: str = USER) -> dict:
    return {
        "userId": user,
        "userAccessToken": "uat-should-never-be-copied",
        "summaryId": f"{file_id}-file",
        "fileType": "FIT",
        "callbackURL": url or callback(f"{FILE_PATH}/{file_id}", id=file_id),
        "startTimeInSeconds": 1767254400,
        "activityId": int(file_id),
    }


def summary_item(path: str, user: str = USER) -> dict:
    url = callback(path, uploadStartTimeInSeconds="1767254400", uploadEndTimeInSeconds="1767254404")
    return {"userId": user, "callbackURL": url}


def land_ping(settings: Settings, name: str, body: dict, age: timedelta | None = None) -> PingFile:
    path = land(settings, f"garmin/ping/{name}.json", body)
    received = datetime.now(UTC) - (age or timedelta(minutes=5))
    return PingFile(path.relative_to(settings.landing).as_posix(), sha256_file(path), received)


def state_of(layout: LakeLayout, pinged: PingFile) -> list[dict]:
    return (
        read_ping_state(layout)
        .filter(pl.col("ping_sha256") == pinged.sha256)
        .sort("item_index")
        .to_dicts()
    )


# --- SSRF guard, redaction and small parsers ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://apis.garmin.com/wellness-api/rest/dailies", "not https"),
        ("https://evil.example.com/wellness-api/rest/dailies", "not an allowed Garmin host"),
        ("https://apis.garmin.com.evil.com/x", "not an allowed Garmin host"),
        ("https://93.184.216.34/x", "IP-literal"),
        ("https://169.254.169.254/latest/meta-data/", "IP-literal"),
        ("https://[::1]/x", "IP-literal"),
        ("https://0x7f.1/x", "not an allowed Garmin host"),
        ("https://apis.garmin.com@evil.com/", "userinfo"),
        ("https://user:pw@apis.garmin.com/x", "userinfo"),
        ("https://evil.com\\@apis.garmin.com/", "backslashes"),
        ("https://apis.garmin.com /x", "whitespace"),
        ("https://apis.garmin.com:8443/x", "port 8443"),
        ("ftp://apis.garmin.com/x", "not https"),
        ("//apis.garmin.com/x", "not https"),
        ("http://127.0.0.1:8000/x", "not https"),
        ("https://localhost/x", "not an allowed Garmin host"),
        ("", "missing"),
    ],
)
def test_ssrf_guard_refuses(url, why):
    assert why in (url_refusal(url) or "")


@pytest.mark.parametrize(
    "url",
    [
        "https://apis.garmin.com/wellness-api/rest/dailies?uploadStartTimeInSeconds=1&token=x",
        "https://healthapi.garmin.com/wellness-api/rest/activityFile?id=7912771181",
        "https://APIS.Garmin.com./x",
        "https://apis.garmin.com:443/x",
    ],
)
def test_ssrf_guard_allows_garmin(url):
    assert url_refusal(url) is None


def test_allowlist_is_configurable_and_test_routes_must_be_loopback():
    assert url_refusal("https://staging.example.org/x", {"staging.example.org"}) is None
    assert PingConfig().route_hosts_for_tests == {}  # production sends nowhere else
    with pytest.raises(ValueError, match="loopback"):
        PingConfig(route_hosts_for_tests={"apis.garmin.com": "https://evil.example.com"})


def test_redact_url_hides_tokens_and_userinfo():
    url = "https://u:pw@apis.garmin.com/x?id=7&token=abc123&Access_Token=zz&api_key=k"
    assert redact_url(url) == (
        "https://REDACTED@apis.garmin.com/x?id=7&token=REDACTED&Access_Token=REDACTED"
        "&api_key=REDACTED"
    )
    assert redact_url("https://apis.garmin.com/x?id=7") == "https://apis.garmin.com/x?id=7"


def test_retry_after_seconds_and_http_date():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("1", now) == 1.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_parse_ping_reads_fixtures_and_refuses_bad_items(fixtures):
    pinged = PingFile("garmin/ping/x.json", "0" * 64, datetime.now(UTC))
    raw = (fixtures / "garmin" / "synthetic_ping_activityFiles.json").read_bytes()
    (task,), refusals = parse_ping(raw, pinged)
    assert not refusals and task.is_activity_file
    assert (task.summary_id, task.activity_id, task.file_type) == (
        "21500000001-file",
        21500000001,
        "FIT",
    )
    assert "PULL_TOKEN_PLACEHOLDER" not in repr(task)  # the URL is kept out of reprs
    bad = {
        "dailies": [
            {"userId": "../etc", "callbackURL": "https://apis.garmin.com/x"},
            {"userId": USER},
            "not an object",
            {"userId": USER, "callbackURL": "https://apis.garmin.com/ok"},
        ],
        # The ConnectStats sample uses the older "file" key for activity files.
        "file": [{"userId": USER, "callbackURL": "https://healthapi.garmin.com/f?id=1"}],
    }
    tasks, refusals = parse_ping(json.dumps(bad).encode(), pinged)
    assert [(t.item_index, t.is_activity_file) for t in tasks] == [(3, False), (4, True)]
    assert [i for i, _ in refusals] == [0, 1, 2]
    assert "unsafe userId" in refusals[0][1] and "no callbackURL" in refusals[1][1]


def test_token_store_errors_never_quote_content(tmp_path, monkeypatch):
    store = tmp_path / "tokens.json"
    store.write_text('{"u1": "' + BEARER + '", ')  # truncated JSON
    with pytest.raises(TokenStoreError) as caught:
        load_token_store(store)
    assert BEARER not in str(caught.value)
    store.write_text(json.dumps({"u1": BEARER}))
    monkeypatch.setenv(ping.TOKENS_ENV, str(store))
    assert load_token_store() == {"u1": BEARER}


# --- fetching against the local Garmin ---------------------------------------------------------


def test_one_time_file_lands_once_with_sidecar(settings, layout, garmin):
    path = garmin.one_time_file("21500000001")
    first = land_ping(settings, "p1", {"activityFiles": [file_item("21500000001")]})
    # Garmin re-delivers the ping (another pull token): same file, different ping body.
    again = file_item("21500000001", callback(path, id="21500000001", extra="1"))
    second = land_ping(settings, "p2", {"activityFiles": [again]})

    report = fetch_pings(settings.landing, layout, [first, second], make_config(garmin))

    assert garmin.hits(path) == 1
    assert report.counts == {"fetched": 2}
    fit = settings.landing / "fit" / USER / "21500000001-file.fit"
    assert fit.read_bytes() == FIT_BYTES
    meta = json.loads((fit.parent / "21500000001-file.fit.ping.json").read_text())
    assert meta["activityId"] == 21500000001 and meta["startTimeInSeconds"] == 1767254400
    assert meta["summaryId"] == "21500000001-file" and meta["fileType"] == "FIT"
    assert meta["userId"] == USER and meta["fileSha256"] == sha256_file(fit)
    assert "userAccessToken" not in json.dumps(meta)
    assert report.landed == [f"fit/{USER}/21500000001-file.fit"]
    assert all(f.complete for f in report.files)

    rerun = fetch_pings(settings.landing, layout, [first, second], make_config(garmin))
    assert rerun.counts == {"skipped": 2} and garmin.hits(path) == 1


def test_summary_ping_lands_as_push_envelope_with_bearer_token(
    settings, layout, garmin, tmp_path, monkeypatch
):
    path = garmin.script("/wellness-api/rest/dailies", ok(json.dumps(DAILIES).encode()))
    store = tmp_path / "tokens.json"
    store.write_text(json.dumps({USER: BEARER}))
    monkeypatch.setenv(ping.TOKENS_ENV, str(store))
    pinged = land_ping(settings, "d", {"dailies": [summary_item(path)]})

    report = fetch_pings(settings.landing, layout, [pinged], make_config(garmin))

    assert report.counts == {"fetched": 1}
    assert garmin.requests[0][1] == f"Bearer {BEARER}"
    (landed,) = report.landed
    body = (settings.landing / landed).read_bytes()
    assert landed == f"garmin/fetched/dailies/{sha256_file(settings.landing / landed)}.json"
    assert json.loads(body) == {"dailies": DAILIES}
    assert parse_push(body).item_counts == {"dailies": 1}  # the push ingest reads it as is


def test_ledger_rows_feed_the_fetcher(settings, layout, garmin):
    path = garmin.one_time_file("21500000002")
    land(settings, "garmin/ping/p.json", {"activityFiles": [file_item("21500000002")]})
    register_landing(settings.landing, layout)
    rows = current_files(layout, "garmin_ping").iter_rows(named=True)
    files = [PingFile.from_ledger_row(row) for row in rows]
    report = fetch_pings(settings.landing, layout, files, make_config(garmin))
    assert report.counts == {"fetched": 1} and garmin.hits(path) == 1


def test_gone_is_recorded_and_not_retried(settings, layout, garmin):
    path = garmin.script(f"{FILE_PATH}/9", status(410))
    pinged = land_ping(settings, "g", {"activityFiles": [file_item("9")]})
    report = fetch_pings(settings.landing, layout, [pinged], make_config(garmin))
    assert report.counts == {"gone": 1} and garmin.hits(path) == 1
    (row,) = state_of(layout, pinged)
    assert (row["status"], row["attempts"], row["last_http_status"]) == ("gone", 1, 410)
    assert report.files[0].complete


def test_429_waits_for_retry_after(settings, layout, garmin):
    path = garmin.script(f"{FILE_PATH}/429", status(429, {"Retry-After": "1"}), ok())
    pinged = land_ping(settings, "r", {"activityFiles": [file_item("429")]})
    started = time.monotonic()
    report = fetch_pings(settings.landing, layout, [pinged], make_config(garmin))
    assert time.monotonic() - started >= 0.9
    assert report.counts == {"fetched": 1} and garmin.hits(path) == 2


def test_500_then_success(settings, layout, garmin):
    path = garmin.script("/wellness-api/rest/epochs", status(500), ok(b"[]"))
    pinged = land_ping(settings, "e", {"epochs": [summary_item(path)]})
    report = fetch_pings(settings.landing, layout, [pinged], make_config(garmin))
    assert report.counts == {"fetched": 1} and garmin.hits(path) == 2
    assert state_of(layout, pinged)[0]["attempts"] == 2


def test_slow_response_times_out_then_retries(settings, layout, garmin):
    path = garmin.script(f"{FILE_PATH}/77", ok(delay=1.0), ok())
    pinged = land_ping(settings, "s", {"activityFiles": [file_item("77")]})
    report = fetch_pings(settings.landing, layout, [pinged], make_config(garmin))
    assert report.counts == {"fetched": 1} and garmin.hits(path) == 2


def test_always_slow_fails_and_stays_retryable(settings, layout, garmin):
    path = garmin.script("/wellness-api/rest/sleeps", ok(b"[]", delay=0.6))
    pinged = land_ping(settings, "s", {"sleeps": [summary_item(path)]})
    config = make_config(garmin, read_timeout_s=0.2, max_attempts=2)
    report = fetch_pings(settings.landing, layout, [pinged], config)
    assert report.counts == {"failed": 1} and garmin.hits(path) == 2
    (row,) = state_of(layout, pinged)
    assert row["retryable"] and "ReadTimeout" in row["reason"]
    assert not report.files[0].complete  # the lead must not mark this ping processed yet


def test_other_4xx_fails_once_with_status(settings, layout, garmin):
    path = garmin.script("/wellness-api/rest/hrv", status(403))
    pinged = land_ping(settings, "h", {"hrv": [summary_item(path)]})
    report = fetch_pings(settings.landing, layout, [pinged], make_config(garmin))
    (row,) = state_of(layout, pinged)
    assert (row["status"], row["last_http_status"], row["attempts"]) == ("failed", 403, 1)
    assert not row["retryable"] and report.files[0].complete and garmin.hits(path) == 1


def test_redirects_followed_only_within_garmin(settings, layout, garmin):
    inside = garmin.script("/wellness-api/rest/moved", ok(b"[]"))
    hop = garmin.script("/r/inside", status(302, {"Location": f"{inside}?token={PULL_TOKEN}"}))
    foreign = f"https://evil.example.com/steal?token={PULL_TOKEN}"
    out = garmin.script("/r/out", status(302, {"Location": foreign}))
    down = garmin.script("/r/down", status(301, {"Location": "http://apis.garmin.com/x"}))
    trick = garmin.script(
        "/r/trick", status(307, {"Location": "https://apis.garmin.com@evil.com/"})
    )
    body = {"dailies": [summary_item(p) for p in (hop, out, down, trick)]}
    pinged = land_ping(settings, "redir", body)

    fetch_pings(settings.landing, layout, [pinged], make_config(garmin))

    rows = state_of(layout, pinged)
    assert [r["status"] for r in rows] == ["fetched", "refused", "refused", "refused"]
    assert garmin.hits(inside) == 1
    assert "evil.example.com" in rows[1]["reason"] and "redirect" in rows[1]["reason"]
    assert "not https" in rows[2]["reason"] and "userinfo" in rows[3]["reason"]
    assert all(PULL_TOKEN not in (r["reason"] or "") for r in rows)


def test_unsafe_callbacks_are_refused_unrequested_and_quarantined(settings, layout, garmin):
    urls = [
        "http://apis.garmin.com/wellness-api/rest/dailies?token=" + PULL_TOKEN,
        "https://evil.example.com/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://apis.garmin.com@evil.com/",
        "https://10.0.0.1/x",
    ]
    items = [{"userId": USER, "callbackURL": u} for u in urls]
    items.append({"userId": "../../etc", "callbackURL": callback("/x")})
    pinged = land_ping(settings, "bad", {"dailies": items})

    report = fetch_pings(settings.landing, layout, [pinged], make_config(garmin))

    assert garmin.requests == []
    assert report.counts == {"refused": 6}  # the unsafe userId is refused while parsing
    assert [p.item_index for p in report.problems] == [0, 1, 2, 3, 4, 5]
    quarantine = read_quarantine(layout).filter(pl.col("stage") == "garmin_ping")
    assert quarantine.height == 6
    assert set(quarantine["input_sha256"]) == {pinged.sha256}
    assert all(r.startswith("refused: ") for r in quarantine["reason"])
    assert report.files[0].complete


def test_unusable_ping_body_is_quarantined_whole(settings, layout, garmin):
    path = land(settings, "garmin/ping/broken.json", b'{"dailies": [')
    pinged = PingFile("garmin/ping/broken.json", sha256_file(path), datetime.now(UTC))
    report = fetch_pings(settings.landing, layout, [pinged], make_config(garmin))
    (problem,) = report.problems
    assert problem.item_index is None and "malformed JSON" in problem.reason
    assert read_quarantine(layout)["item_index"].to_list() == [None]


def test_expired_pings_are_not_fetched(settings, layout, garmin):
    file_path = garmin.one_time_file("5")
    daily = garmin.script("/wellness-api/rest/dailies", ok(b"[]"))
    old = timedelta(hours=25)
    files = land_ping(settings, "f", {"activityFiles": [file_item("5")]}, age=old)
    summaries = land_ping(settings, "d", {"dailies": [summary_item(daily)]}, age=old)

    report = fetch_pings(settings.landing, layout, [files, summaries], make_config(garmin))

    assert garmin.hits(file_path) == 0
    assert report.counts == {"expired": 1, "fetched": 1}  # summaries have no TTL by default
    assert "download window" in state_of(layout, files)[0]["reason"]

    strict = land_ping(settings, "d2", {"dailies": [summary_item(daily + "2")]}, age=old)
    config = make_config(garmin, summary_ttl_s=3600.0)
    assert fetch_pings(settings.landing, layout, [strict], config).counts == {"expired": 1}


def test_tokens_never_reach_report_state_quarantine_or_logs(
    settings, layout, garmin, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)  # httpx logs full request URLs at INFO
    store = tmp_path / "tokens.json"
    store.write_text(json.dumps({USER: BEARER}))
    ok_file = garmin.one_time_file("1")
    denied = garmin.script("/wellness-api/rest/denied", status(403))
    out = garmin.script(
        "/r/out", status(302, {"Location": f"https://evil.com/?token={PULL_TOKEN}"})
    )
    slow = garmin.script("/wellness-api/rest/slow", ok(b"[]", delay=0.5))
    body = {
        "activityFiles": [file_item("1")],
        "dailies": [summary_item(p) for p in (denied, out, slow)]
        + [{"userId": USER, "callbackURL": f"http://apis.garmin.com/x?token={PULL_TOKEN}"}],
    }
    pinged = land_ping(settings, "mixed", body)
    config = make_config(garmin, token_store=store, read_timeout_s=0.15, max_attempts=2)

    report = fetch_pings(settings.landing, layout, [pinged], config)

    assert garmin.hits(ok_file) == 1 and garmin.requests[0][1] == f"Bearer {BEARER}"
    assert report.counts == {"fetched": 1, "failed": 2, "refused": 2}
    assert "HTTP Request" in caplog.text and "REDACTED" in caplog.text  # httpx was scrubbed
    written = [p for p in settings.lake.rglob("*") if p.is_file()]
    written += [p for p in (settings.landing / "fit").rglob("*") if p.is_file()]
    assert written
    for secret in (PULL_TOKEN, BEARER, "uat-should-never-be-copied"):
        assert secret not in repr(report)
        assert secret not in caplog.text
        for path in written:
            assert secret.encode() not in path.read_bytes(), path
        state = read_ping_state(layout).write_csv()
        assert secret not in state


# --- crash and resume --------------------------------------------------------------------------


def test_crash_mid_batch_resumes_without_refetching(settings, layout, garmin, monkeypatch):
    ids = [str(100 + i) for i in range(6)]
    paths = [garmin.one_time_file(i) for i in ids]
    daily = garmin.script("/wellness-api/rest/dailies", ok(json.dumps(DAILIES).encode()))
    body = {"activityFiles": [file_item(i) for i in ids], "dailies": [summary_item(daily)]}
    pinged = land_ping(settings, "batch", body)
    real_save, calls = ping._save_state, []

    def crash_after_second_item(path: Path, rows) -> None:
        real_save(path, rows)  # call 1 records the pending items, then one per item
        calls.append(path)
        if len(calls) == 3:
            raise RuntimeError(f"simulated crash (token {PULL_TOKEN})")

    monkeypatch.setattr(ping, "_save_state", crash_after_second_item)
    with pytest.raises(PingFetchError) as caught:
        fetch_pings(settings.landing, layout, [pinged], make_config(garmin))
    assert PULL_TOKEN not in str(caught.value)
    assert "pending" in {r["status"] for r in state_of(layout, pinged)}  # it stopped midway

    monkeypatch.setattr(ping, "_save_state", real_save)
    report = fetch_pings(settings.landing, layout, [pinged], make_config(garmin))

    assert {r["status"] for r in state_of(layout, pinged)} == {"fetched"}
    assert [garmin.hits(p) for p in [*paths, daily]] == [1] * 7
    assert report.files[0].complete


def test_crash_between_landing_and_recording_does_not_refetch(
    settings, layout, garmin, monkeypatch
):
    ids = [str(200 + i) for i in range(4)]
    paths = [garmin.one_time_file(i) for i in ids]
    pinged = land_ping(settings, "files", {"activityFiles": [file_item(i) for i in ids]})
    real_save, calls = ping._save_state, []

    def die_before_recording(path: Path, rows) -> None:
        calls.append(path)
        if len(calls) > 1:  # files land, but the process dies before their state is written
            raise RuntimeError("simulated crash")
        real_save(path, rows)

    monkeypatch.setattr(ping, "_save_state", die_before_recording)
    with pytest.raises(PingFetchError):
        fetch_pings(settings.landing, layout, [pinged], make_config(garmin))
    landed_before = sorted((settings.landing / "fit" / USER).glob("*.fit"))
    assert landed_before and {r["status"] for r in state_of(layout, pinged)} == {"pending"}

    monkeypatch.setattr(ping, "_save_state", real_save)
    fetch_pings(settings.landing, layout, [pinged], make_config(garmin))

    rows = state_of(layout, pinged)
    assert {r["status"] for r in rows} == {"fetched"}
    assert [garmin.hits(p) for p in paths] == [1] * 4  # never a 410 for our own download
    assert sum(r["reason"] == "already landed" for r in rows) == len(landed_before)


def test_unreachable_network_pauses_fetching_until_the_next_run(tmp_path, settings):
    """With Garmin unreachable, a run stops starting new items after a few network failures
    (so a big batch cannot take hours) and leaves them pending for the next run."""
    import socket

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connections are refused
    config = PingConfig(
        route_hosts_for_tests={"apis.garmin.com": f"http://127.0.0.1:{port}"},
        concurrency=1,
        connect_timeout_s=0.5,
        read_timeout_s=0.5,
        total_timeout_s=1.0,
        max_attempts=3,
        backoff_base_s=0.01,
        backoff_max_s=0.02,
        network_failures_before_pause=2,
    )
    pings = [
        land_ping(settings, f"p{i}", {"dailies": [summary_item(f"/d{i}", user=f"u{i}")]})
        for i in range(10)
    ]
    layout = LakeLayout(settings.lake)
    report = fetch_pings(settings.landing, layout, pings, config)
    assert report.counts.get("deferred", 0) >= 8
    assert not any(
        outcome.complete for outcome in report.files if outcome.sha256 != pings[0].sha256
    )


def test_an_unexpected_error_on_one_item_fails_that_item_alone(
    settings, layout, garmin, monkeypatch
):
    ids = [str(300 + i) for i in range(3)]
    paths = [garmin.one_time_file(i) for i in ids]
    pinged = land_ping(settings, "one-bad", {"activityFiles": [file_item(i) for i in ids]})
    real_fetch = ping._Fetcher._fetch

    async def fetch(self, task, prior_attempts):
        if task.summary_id == "301-file":
            raise KeyError("injected failure")
        return await real_fetch(self, task, prior_attempts)

    monkeypatch.setattr(ping._Fetcher, "_fetch", fetch)
    report = fetch_pings(settings.landing, layout, [pinged], make_config(garmin))

    assert report.counts == {"fetched": 2, "failed": 1}
    assert [garmin.hits(p) for p in paths] == [1, 0, 1]
    quarantine = read_quarantine(layout).filter(pl.col("stage") == "garmin_ping")
    assert quarantine["item_index"].to_list() == [1]
    assert quarantine["reason"][0] == "failed: unexpected KeyError: 'injected failure'"
    assert report.files[0].complete  # not retried on every run: `wearhouse quarantine retry`
