"""OAuth 2.0 PKCE connection, the encrypted token store and refresh-token rotation, against
the fake Garmin API's token endpoint."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import time
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from pipelines.cli import main
from pipelines.training import oauth
from pipelines.training.tokens import TokenStore, TokenStoreError
from pipelines.training.users import latest_permissions
from tests.fake_garmin import fake_garmin  # noqa: F401  (fixture)
from tests.training_harness import INTERVAL_PLAN, Harness, write_plans

ANA = "ana-1"


@pytest.fixture
def garmin(settings, fake_garmin):  # noqa: F811
    return Harness(settings, fake_garmin)


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_pkce_s256_challenge():
    verifier, challenge = oauth.pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_connect_and_callback_store_encrypted_tokens(garmin, settings, monkeypatch, caplog):
    for name, value in garmin.environ().items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    home = ["--home", str(settings.home)]
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert main(["garmin", "connect", "--user", ANA, *home]) == 0
    url = next(line.strip() for line in out.getvalue().splitlines() if "oauth2Confirm" in line)
    query = _query(url)
    assert query["code_challenge_method"] == "S256" and query["response_type"] == "code"
    assert len(query["code_challenge"]) == 43 and query["state"]
    code = garmin.fake.approve(url, ANA)
    assert main(["garmin", "callback", "--state", query["state"], "--code", code, *home]) == 0
    assert "user ana-1 connected" in out.getvalue()
    assert "WORKOUT_IMPORT" in out.getvalue()  # GET permissions ran, with the new token
    tokens = garmin.store().get(ANA)
    assert tokens is not None and tokens.garmin_user_id == ANA
    assert tokens.access_token in garmin.fake.access and tokens.refresh_token in garmin.fake.refresh
    assert "WORKOUT_IMPORT" in latest_permissions(garmin.layout)[ANA]
    # encrypted at rest; nothing anywhere else holds a token, the code or the verifier
    blob = garmin.config.token_store.read_bytes()
    secrets = [tokens.access_token, tokens.refresh_token, code]
    for path in settings.home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s.encode() in data for s in secrets), path
    assert not any(s in caplog.text + out.getvalue() for s in secrets)
    assert blob.startswith(b"gAAAAA")  # a Fernet token
    # the state is spent: a replay fails
    assert main(["garmin", "callback", "--state", query["state"], "--code", code, *home]) == 1


def test_a_wrong_verifier_is_refused(garmin):
    store = garmin.store()
    url, state = oauth.start(garmin.config, store, ANA)
    # the code is bound to another challenge (as if the URL had been tampered with)
    forged = url.replace(_query(url)["code_challenge"], oauth.pkce_pair()[1])
    code = garmin.fake.approve(forged, ANA)
    with pytest.raises(oauth.OAuthError) as failure:
        oauth.complete(garmin.config, store, state, code)
    assert "400" in str(failure.value) and code not in str(failure.value)
    assert store.get(ANA) is None


def _connected(garmin) -> TokenStore:
    store = garmin.store()
    url, state = oauth.start(garmin.config, store, ANA)
    oauth.complete(garmin.config, store, state, garmin.fake.approve(url, ANA))
    return store


def test_refresh_before_expiry_rotates_and_stores(garmin):
    store = _connected(garmin)
    old = store.get(ANA)
    store.put(ANA, replace(old, expires_at=time.time() + 30))  # within the refresh margin
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    report = garmin.push()
    assert len(report.created) == 3
    new = store.get(ANA)
    assert new.refresh_token != old.refresh_token and new.access_token != old.access_token
    assert old.refresh_token not in garmin.fake.refresh  # spent on Garmin's side
    assert [c.path for c in garmin.fake.calls].count("/oauth/token") == 2  # exchange + refresh
    # a second provider that read the store before still gets the new tokens, no refresh
    assert garmin.provider().access_token(ANA) == new.access_token
    assert [c.path for c in garmin.fake.calls].count("/oauth/token") == 2


def test_a_401_refreshes_once_and_retries(garmin):
    store = _connected(garmin)
    garmin.fake.access.pop(store.get(ANA).access_token)  # revoked on Garmin's side
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    report = garmin.push()
    assert len(report.created) == 3 and not report.failed
    assert next(c.status for c in garmin.fake.calls if c.path != "/oauth/token") == 401


def test_a_spent_refresh_token_fails_without_leaking(garmin):
    store = _connected(garmin)
    tokens = store.get(ANA)
    garmin.fake.refresh.clear()  # e.g. rotated by another deployment
    store.put(ANA, replace(tokens, expires_at=time.time() - 1))
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    report = garmin.push()
    assert len(report.failed) == 3 and not report.created
    text = repr(report.failed)
    assert "400" in text
    assert tokens.refresh_token not in text and tokens.access_token not in text
    assert garmin.fake.sent() == []


def test_wrong_key_and_missing_key(garmin):
    _connected(garmin)
    from cryptography.fernet import Fernet

    with pytest.raises(TokenStoreError, match="cannot be decrypted"):
        TokenStore(garmin.config.token_store, Fernet.generate_key().decode()).get(ANA)
    with pytest.raises(TokenStoreError, match="not a Fernet key"):
        TokenStore(garmin.config.token_store, "correct horse battery staple")
    with pytest.raises(TokenStoreError, match="not set"):
        TokenStore(garmin.config.token_store, None)


def test_plain_json_tokens_still_work(garmin):
    garmin.connect(ANA)  # only in WEARHOUSE_GARMIN_TOKENS
    assert not garmin.config.token_store.exists()
    write_plans(garmin.layout, {ANA: INTERVAL_PLAN})
    assert len(garmin.push().created) == 3
