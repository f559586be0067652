"""A fake Garmin API on loopback (Starlette under uvicorn in a thread, ephemeral port).

It enforces what the real one documents, so the client is tested against refusals and not
only against success: bearer auth (401), workout validation (400), unknown ids (404), a
duplicate backfill (409), a missing permission (403), a per-minute limit (429 with
Retry-After), injectable 5xx, and an OAuth 2.0 token endpoint that checks the PKCE verifier
(S256) and rotates refresh tokens (a spent refresh token is refused). Every request is
recorded (method, path, user), so tests count what was sent.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret-0123456789"
ALL_PERMISSIONS = [
    "ACTIVITY_EXPORT",
    "HEALTH_EXPORT",
    "WORKOUT_IMPORT",
    "COURSE_IMPORT",
    "HISTORICAL_DATA_EXPORT",
]
_DURATIONS = {"TIME", "DISTANCE", "OPEN", "LAP_BUTTON", "CALORIES", "HR_LESS_THAN"}
_TARGETS = {"OPEN", "PACE", "SPEED", "HEART_RATE", "CADENCE", "POWER"}
_INTENSITIES = {"WARMUP", "INTERVAL", "ACTIVE", "RECOVERY", "REST", "COOLDOWN", "MAIN"}
_SPORTS = {"RUNNING", "CYCLING", "LAP_SWIMMING", "GENERIC", "STRENGTH_TRAINING"}


@dataclass
class Call:
    method: str
    path: str
    user: str | None
    status: int
    at: float


def _s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


def workout_problem(body: Any) -> str | None:
    """Why Garmin would refuse this workout (None: valid)."""
    if not isinstance(body, dict):
        return "workout must be an object"
    if body.get("sport") not in _SPORTS:
        return f"invalid sport {body.get('sport')!r}"
    if not body.get("workoutName"):
        return "workoutName is required"
    if not body.get("workoutProvider") or not body.get("workoutSourceId"):
        return "workoutProvider and workoutSourceId are required"
    segments = body.get("segments")
    if not isinstance(segments, list) or not segments:
        return "at least one segment is required"
    orders: list[int] = []
    for segment in segments:
        if not isinstance(segment, dict) or not isinstance(segment.get("steps"), list):
            return "segment steps are required"
        if not segment["steps"]:
            return "a segment needs steps"
        if problem := _steps_problem(segment["steps"], orders):
            return problem
    if orders != list(range(1, len(orders) + 1)):
        return "stepOrder must number the steps 1..n"
    return None


def _steps_problem(steps: list[Any], orders: list[int]) -> str | None:
    for step in steps:
        if not isinstance(step, dict):
            return "a step must be an object"
        orders.append(step.get("stepOrder"))
        if step.get("type") == "WorkoutRepeatStep":
            value = step.get("repeatValue")
            if not isinstance(value, int) or value < 1:
                return "repeatValue must be a positive integer"
            if not isinstance(step.get("steps"), list) or not step["steps"]:
                return "a repeat step needs steps"
            if problem := _steps_problem(step["steps"], orders):
                return problem
            continue
        if step.get("type") != "WorkoutStep":
            return f"unknown step type {step.get('type')!r}"
        if step.get("intensity") not in _INTENSITIES:
            return f"invalid intensity {step.get('intensity')!r}"
        duration = step.get("durationType")
        if duration not in _DURATIONS:
            return f"invalid durationType {duration!r}"
        value = step.get("durationValue")
        if duration in ("TIME", "DISTANCE") and not (isinstance(value, int | float) and value > 0):
            return f"{duration} steps need a positive durationValue"
        target = step.get("targetType")
        if target not in _TARGETS:
            return f"invalid targetType {target!r}"
        low, high = step.get("targetValueLow"), step.get("targetValueHigh")
        if low is not None and high is not None and low > high:
            return "targetValueLow must not exceed targetValueHigh"
        if target in ("PACE", "SPEED") and (low is None or high is None or low <= 0):
            return f"{target} targets need targetValueLow and targetValueHigh in m/s"
    return None


@dataclass
class FakeGarmin:
    per_minute: int = 1000  # requests per window_s (Garmin's window is a minute)
    window_s: float = 60.0
    retry_after_s: int = 1
    access_ttl_s: float = 86400.0
    access: dict[str, tuple[str, float]] = field(default_factory=dict)  # token → (user, expires)
    refresh: dict[str, str] = field(default_factory=dict)  # current refresh token → user
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    permissions: dict[str, list[str]] = field(default_factory=dict)
    registered: set[str] = field(default_factory=set)
    workouts: dict[int, dict[str, Any]] = field(default_factory=dict)
    schedules: dict[int, dict[str, Any]] = field(default_factory=dict)
    backfills: set[tuple[str, str, int, int]] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    failures: list[tuple[str, str, int]] = field(default_factory=list)  # method, path prefix
    url: str = ""

    def __post_init__(self) -> None:
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        self._recent: collections.deque[float] = collections.deque()
        self.app = Starlette(
            routes=[
                Route("/workoutportal/workout/v2", self._create_workout, methods=["POST"]),
                Route(
                    "/training-api/workout/v2/{wid}",
                    self._workout,
                    methods=["GET", "PUT", "DELETE"],
                ),
                Route("/training-api/schedule", self._create_schedule, methods=["POST"]),
                Route(
                    "/training-api/schedule/{sid}", self._schedule, methods=["GET", "PUT", "DELETE"]
                ),
                Route("/wellness-api/rest/user/id", self._user_id, methods=["GET"]),
                Route("/wellness-api/rest/user/permissions", self._permissions, methods=["GET"]),
                Route("/wellness-api/rest/user/registration", self._deregister, methods=["DELETE"]),
                Route("/wellness-api/rest/backfill/{kind}", self._backfill, methods=["GET"]),
                Route("/oauth/token", self._token, methods=["POST"]),
            ]
        )

    # --- test helpers ---------------------------------------------------------------------

    def add_user(self, user: str, permissions: list[str] | None = None) -> str:
        """Register ``user`` and return a valid access token for it."""
        token = "at-" + secrets.token_urlsafe(24)
        self.access[token] = (user, time.time() + self.access_ttl_s)
        self.permissions[user] = list(ALL_PERMISSIONS if permissions is None else permissions)
        self.registered.add(user)
        return token

    def approve(self, authorization_url: str, user: str) -> str:
        """The user consents on Garmin's page: a code bound to the URL's challenge."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        assert query["client_id"] == CLIENT_ID and query["code_challenge_method"] == "S256"
        code = "code-" + secrets.token_urlsafe(16)
        self.codes[code] = {"user": user, "challenge": query["code_challenge"]}
        self.permissions.setdefault(user, list(ALL_PERMISSIONS))
        self.registered.add(user)
        return code

    def fail_next(self, method: str, path_prefix: str, status: int, times: int = 1) -> None:
        self.failures.extend([(method, path_prefix, status)] * times)

    def sent(self, *methods: str) -> list[Call]:
        """Calls that reached the API (not the token endpoint), optionally of these methods."""
        return [
            c
            for c in self.calls
            if not c.path.startswith("/oauth") and (not methods or c.method in methods)
        ]

    # --- plumbing -------------------------------------------------------------------------

    def _user(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        entry = self.access.get(header[7:])
        if entry is None or entry[1] < time.time():
            return None
        return entry[0] if entry[0] in self.registered else None

    def _gate(self, request: Request) -> tuple[str | None, Response | None]:
        user = self._user(request)
        with self._lock:
            now = time.monotonic()
            while self._recent and now - self._recent[0] >= self.window_s:
                self._recent.popleft()
            if len(self._recent) >= self.per_minute:
                return user, JSONResponse(
                    {"error": "rate limit"},
                    429,
                    headers={"Retry-After": str(self.retry_after_s)},
                )
            self._recent.append(now)
            for i, (method, prefix, status) in enumerate(self.failures):
                if request.method == method and request.url.path.startswith(prefix):
                    del self.failures[i]
                    headers = {"Retry-After": str(self.retry_after_s)} if status == 429 else {}
                    return user, JSONResponse({"error": "injected"}, status, headers=headers)
        if user is None:
            return None, JSONResponse({"error": "unauthorized"}, 401)
        return user, None

    def _log(self, request: Request, user: str | None, response: Response) -> Response:
        self.calls.append(
            Call(request.method, request.url.path, user, response.status_code, time.monotonic())
        )
        return response

    async def _handle(self, request: Request, handler) -> Response:
        user, refusal = self._gate(request)
        if refusal is None:
            refusal = await handler(request, user)
        return self._log(request, user, refusal)

    def _needs(self, user: str, permission: str) -> Response | None:
        if permission not in self.permissions.get(user, []):
            return JSONResponse({"error": f"{permission} not granted"}, 403)
        return None

    # --- Training API ---------------------------------------------------------------------

    async def _create_workout(self, request: Request) -> Response:
        async def handle(request: Request, user: str) -> Response:
            if refused := self._needs(user, "WORKOUT_IMPORT"):
                return refused
            body = await request.json()
            if problem := workout_problem(body):
                return JSONResponse({"error": problem}, 400)
            wid = next(self._ids)
            self.workouts[wid] = {**body, "workoutId": wid, "ownerId": user}
            return JSONResponse(self.workouts[wid], 200)

        return await self._handle(request, handle)

    async def _workout(self, request: Request) -> Response:
        async def handle(request: Request, user: str) -> Response:
            wid = int(request.path_params["wid"]) if request.path_params["wid"].isdigit() else -1
            found = self.workouts.get(wid)
            if found is None or found["ownerId"] != user:
                return JSONResponse({"error": "not found"}, 404)
            if request.method == "GET":
                return JSONResponse(found)
            if request.method == "DELETE":
                del self.workouts[wid]
                for sid in [s for s, v in self.schedules.items() if v["workoutId"] == wid]:
                    del self.schedules[sid]
                return Response(status_code=204)
            body = await request.json()
            if problem := workout_problem(body):
                return JSONResponse({"error": problem}, 400)
            self.workouts[wid] = {**body, "workoutId": wid, "ownerId": user}
            return Response(status_code=204)

        return await self._handle(request, handle)

    async def _create_schedule(self, request: Request) -> Response:
        async def handle(request: Request, user: str) -> Response:
            body = await request.json()
            wid = body.get("workoutId")
            if self.workouts.get(wid, {}).get("ownerId") != user:
                return JSONResponse({"error": "workout not found"}, 404)
            if not isinstance(body.get("date"), str):
                return JSONResponse({"error": "date is required"}, 400)
            sid = next(self._ids)
            self.schedules[sid] = {"scheduleId": sid, "workoutId": wid, "date": body["date"]}
            return JSONResponse(sid, 200)

        return await self._handle(request, handle)

    async def _schedule(self, request: Request) -> Response:
        async def handle(request: Request, user: str) -> Response:
            sid = int(request.path_params["sid"]) if request.path_params["sid"].isdigit() else -1
            found = self.schedules.get(sid)
            if found is None or self.workouts.get(found["workoutId"], {}).get("ownerId") != user:
                return JSONResponse({"error": "not found"}, 404)
            if request.method == "GET":
                return JSONResponse(found)
            if request.method == "DELETE":
                del self.schedules[sid]
                return Response(status_code=204)
            body = await request.json()
            self.schedules[sid] = {**found, "date": body["date"], "workoutId": body["workoutId"]}
            return Response(status_code=204)

        return await self._handle(request, handle)

    # --- user endpoints and backfill ------------------------------------------------------

    async def _user_id(self, request: Request) -> Response:
        async def handle(request: Request, user: str) -> Response:
            return JSONResponse({"userId": user})

        return await self._handle(request, handle)

    async def _permissions(self, request: Request) -> Response:
        async def handle(request: Request, user: str) -> Response:
            return JSONResponse(self.permissions.get(user, []))

        return await self._handle(request, handle)

    async def _deregister(self, request: Request) -> Response:
        async def handle(request: Request, user: str) -> Response:
            self.registered.discard(user)
            return Response(status_code=204)

        return await self._handle(request, handle)

    async def _backfill(self, request: Request) -> Response:
        async def handle(request: Request, user: str) -> Response:
            if refused := self._needs(user, "HISTORICAL_DATA_EXPORT"):
                return refused
            start = int(request.query_params["summaryStartTimeInSeconds"])
            end = int(request.query_params["summaryEndTimeInSeconds"])
            kind = request.path_params["kind"]
            limit = 30 if kind.startswith("activit") else 90
            if end <= start or end - start > limit * 86400:
                return JSONResponse({"error": f"at most {limit} days per request"}, 400)
            key = (user, kind, start, end)
            if key in self.backfills:
                return JSONResponse({"error": "duplicate backfill"}, 409)
            self.backfills.add(key)
            return Response(status_code=202)

        return await self._handle(request, handle)

    # --- OAuth 2.0 token endpoint ---------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        # parsed by hand: Starlette's form parser needs python-multipart
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        response = self._grant(form)
        self.calls.append(
            Call("POST", "/oauth/token", None, response.status_code, time.monotonic())
        )
        return response

    def _grant(self, form: dict[str, Any]) -> Response:
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client"}, 401)
        if form.get("grant_type") == "authorization_code":
            entry = self.codes.pop(str(form.get("code")), None)
            if entry is None:
                return JSONResponse({"error": "invalid_grant"}, 400)
            if _s256(str(form.get("code_verifier", ""))) != entry["challenge"]:
                return JSONResponse({"error": "invalid_grant", "detail": "PKCE mismatch"}, 400)
            user = entry["user"]
        elif form.get("grant_type") == "refresh_token":
            user = self.refresh.pop(str(form.get("refresh_token")), None)
            if user is None:  # unknown or spent: refresh tokens rotate
                return JSONResponse({"error": "invalid_grant"}, 400)
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        access = "at-" + secrets.token_urlsafe(24)
        refresh = "rt-" + secrets.token_urlsafe(24)
        self.access[access] = (user, time.time() + self.access_ttl_s)
        self.refresh[refresh] = user
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": int(self.access_ttl_s),
                "refresh_token": refresh,
                "refresh_token_expires_in": 7776000,
                "scope": "PARTNER_WRITE PARTNER_READ CONNECT_READ CONNECT_WRITE",
            }
        )


class _Running:
    def __init__(self, fake: FakeGarmin) -> None:
        self.fake = fake
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        fake.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(
            fake.app, log_config=None, access_log=False, lifespan="off", ws="none"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> FakeGarmin:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert time.monotonic() < deadline, "the fake Garmin API did not start"
            time.sleep(0.01)
        return self.fake

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(20)
        self._sock.close()


@pytest.fixture
def fake_garmin():
    with _Running(FakeGarmin()) as fake:
        yield fake
