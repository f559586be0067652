"""Garmin user endpoints (user id, permissions, registration) and the outbound records that
name users: permissions checked, and erasure of a user's outbound rows.

A user's permissions are the latest of two sources: ``userPermissionsChange`` notices (the
``users`` silver table) and answers of GET permissions (``outbound/garmin_permissions``). A
user with no record yet counts as granted, as at connection (Garmin asks the user for every
permission then).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from pipelines.lake.erasure import erased_users
from pipelines.lake.io import write_parquet_atomic
from pipelines.lake.layout import LakeLayout
from pipelines.lake.ledger import is_safe_id
from pipelines.training import endpoints
from pipelines.training.client import ApiError, GarminClient

WORKOUT_IMPORT = "WORKOUT_IMPORT"
HISTORICAL_DATA_EXPORT = "HISTORICAL_DATA_EXPORT"

PERMISSIONS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "permissions": pl.List(pl.String()),
    "checked_at": pl.Datetime("us", "UTC"),
}

# Outbound tables that name users (all Parquet under outbound/, with a user_id column).
USER_TABLES = ("garmin_workouts", "garmin_permissions", "garmin_backfill")


class UserIdError(ValueError):
    pass


def checked_user_id(user_id: str) -> str:
    """The id, when it is safe as a path component and in logs (the ledger's own rule)."""
    if not isinstance(user_id, str) or not is_safe_id(user_id):
        raise UserIdError(f"user id {str(user_id)[:40]!r} is not a safe id")
    return user_id


def outbound_path(layout: LakeLayout, table: str) -> Path:
    return layout.outbound_dir / f"{table}.parquet"


def read_outbound(layout: LakeLayout, table: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    path = outbound_path(layout, table)
    if not path.exists():
        return pl.DataFrame(schema=schema)
    frame = pl.read_parquet(path)
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def record_permissions(
    layout: LakeLayout, user_id: str, permissions: list[str], at: datetime | None = None
) -> None:
    old = read_outbound(layout, "garmin_permissions", PERMISSIONS_SCHEMA)
    row = pl.DataFrame(
        {
            "user_id": [user_id],
            "permissions": [sorted(set(permissions))],
            "checked_at": [at or datetime.now(UTC)],
        },
        schema=PERMISSIONS_SCHEMA,
    )
    frame = pl.concat([old.filter(pl.col("user_id") != user_id), row]).sort("user_id")
    write_parquet_atomic(frame, outbound_path(layout, "garmin_permissions"))


def latest_permissions(layout: LakeLayout) -> dict[str, list[str]]:
    """user → permissions, from the newer of the last notice and the last GET."""
    frames = [
        read_outbound(layout, "garmin_permissions", PERMISSIONS_SCHEMA).rename({"checked_at": "at"})
    ]
    users = layout.silver_path("users")
    if users.exists():
        notices = pl.read_parquet(users).filter(
            pl.col("user_id").is_not_null() & pl.col("permissions_changed_at").is_not_null()
        )
        frames.append(
            notices.select(
                "user_id",
                pl.col("permissions").cast(pl.List(pl.String())),
                pl.col("permissions_changed_at").cast(pl.Datetime("us", "UTC")).alias("at"),
            )
        )
    latest = pl.concat(frames).sort("at").group_by("user_id").agg(pl.col("permissions").last())
    return {row[0]: list(row[1] or []) for row in latest.iter_rows()}


def granted(permissions: dict[str, list[str]], user_id: str, permission: str) -> bool:
    return user_id not in permissions or permission in permissions[user_id]


def fetch_user_id(client: GarminClient, user_id: str) -> str | None:
    response = client.request("GET", endpoints.USER_ID, user_id)
    if response.status_code != 200:
        raise client.error(response, "GET user id")
    try:
        value = response.json().get("userId")
    except (ValueError, AttributeError):
        return None
    return str(value) if value is not None else None


def fetch_permissions(client: GarminClient, user_id: str) -> list[str]:
    response = client.request("GET", endpoints.USER_PERMISSIONS, user_id)
    if response.status_code != 200:
        raise client.error(response, "GET permissions")
    try:
        body = response.json()
    except ValueError:
        raise ApiError("GET permissions: the answer is not JSON") from None
    if not isinstance(body, list) or not all(isinstance(p, str) for p in body):
        raise ApiError("GET permissions: expected a list of permission names")
    return body


def refresh_permissions(layout: LakeLayout, client: GarminClient, user_id: str) -> list[str]:
    permissions = fetch_permissions(client, user_id)
    record_permissions(layout, user_id, permissions)
    return permissions


def delete_registration(client: GarminClient, user_id: str) -> bool:
    """DELETE registration: True when Garmin no longer has it (now or already)."""
    response = client.request("DELETE", endpoints.USER_REGISTRATION, user_id)
    if response.status_code in (200, 202, 204, 404):
        return True
    raise client.error(response, "DELETE registration")


def land_deregistration(landing: Path, user_id: str, now: datetime | None = None) -> Path:
    """A ``deregistrations`` notice in landing, as Garmin sends one, so the next run erases
    the user as it does for any deregistration. Written beside and linked into place: never
    a half file, never over another."""
    now = now or datetime.now(UTC)
    folder = landing / "garmin" / "push" / now.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    body = {"deregistrations": [{"userId": checked_user_id(user_id)}]}
    target = folder / f"wearhouse-disconnect-{uuid.uuid4().hex}.json"
    tmp = folder / f".{target.name}.{uuid.uuid4().hex}.part"
    try:
        tmp.write_text(json.dumps(body))
        os.link(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def purge_users(layout: LakeLayout, user_ids: Iterable[str] = ()) -> int:
    """Drop outbound rows of ``user_ids`` and of every erased user; rows removed."""
    erased = set(erased_users(layout))
    named = set(user_ids)
    removed = 0
    for table in USER_TABLES:
        path = outbound_path(layout, table)
        if not path.exists():
            continue
        frame = pl.read_parquet(path)
        gone = pl.Series(
            [
                u in named or hashlib.sha256(u.encode()).hexdigest() in erased
                for u in frame.get_column("user_id").to_list()
            ],
            dtype=pl.Boolean(),
        )
        if gone.any():
            removed += int(gone.sum())
            write_parquet_atomic(frame.filter(~gone), path)
    return removed
