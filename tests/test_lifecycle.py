"""Updates, permissions and deregistration through the whole pipeline."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import duckdb
import polars as pl

from pipelines.cli import run_pipeline
from tests.conftest import land

ERASED = "athlete-to-forget-7f3a"
KEPT = "athlete-who-stays-21c9"
T0 = 1_767_254_400  # 2026-01-01T08:00Z


def query(settings, sql):
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        return con.execute(sql).fetchall()


def activity(user: str, activity_id: int, start: int, distance: float) -> dict:
    return {
        "userId": user,
        "summaryId": str(activity_id),
        "activityId": activity_id,
        "activityType": "RUNNING",
        "startTimeInSeconds": start,
        "startTimeOffsetInSeconds": 3600,
        "durationInSeconds": 1800,
        "distanceInMeters": distance,
    }


def daily(user: str, start: int, steps: int) -> dict:
    return {
        "userId": user,
        "summaryId": f"x{user[:6]}-{start:x}",
        "calendarDate": "2026-01-01",
        "startTimeInSeconds": start,
        "startTimeOffsetInSeconds": 3600,
        "durationInSeconds": 86400,
        "steps": steps,
        "timeOffsetHeartRateSamples": {"0": 61, "15": 63},
    }


def all_text_under(home: Path) -> list[tuple[str, str]]:
    """(file, text) for every file, with Parquet and DuckDB contents decoded to text."""
    out = []
    for path in home.rglob("*"):
        if not path.is_file():
            continue
        out.append((str(path), path.read_bytes().decode("latin-1")))
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            out.append((str(path), frame.cast(pl.String, strict=False).write_csv()))
        if path.suffix == ".duckdb":
            with duckdb.connect(str(path), read_only=True) as con:
                for (table,) in con.execute("SHOW TABLES").fetchall():
                    out.append(
                        (f"{path}:{table}", str(con.execute(f'SELECT * FROM "{table}"').fetchall()))
                    )
    return out


def test_deregistration_erases_the_user_everywhere(settings, fixtures):
    land(
        settings,
        "garmin/push/d1/activities.json",
        {"activities": [activity(ERASED, 9001, T0, 12345.67), activity(KEPT, 9002, T0, 5000.5)]},
    )
    land(settings, "garmin/push/d1/dailies.json", {"dailies": [daily(ERASED, T0, 4321)]})
    fit = settings.landing / "fit" / ERASED / "run.fit"
    fit.parent.mkdir(parents=True)
    shutil.copy(fixtures / "fit" / "activity_1378220136.fit", fit)
    assert run_pipeline(settings, out=io.StringIO())
    assert query(settings, f"SELECT count(*) FROM sessions WHERE user_id = '{ERASED}'")[0][0] == 2
    # the leak detector finds the user before erasure (inside Parquet and DuckDB too)
    found = {
        Path(name.split(":")[0]).suffix
        for name, text in all_text_under(settings.home)
        if ERASED in text
    }
    assert {".parquet", ".duckdb", ".json"} <= found

    land(settings, "garmin/push/d2/deregistrations.json", {"deregistrations": [{"userId": ERASED}]})
    assert run_pipeline(settings, out=io.StringIO())

    leaks = [
        name for name, text in all_text_under(settings.home) if ERASED in text or "12345.67" in text
    ]
    assert leaks == []
    # the other user's data is untouched
    assert query(settings, "SELECT user_id, distance_m FROM sessions") == [(KEPT, 5000.5)]
    # one audit row: hashed id, nothing else personal
    digest = hashlib.sha256(ERASED.encode()).hexdigest()
    assert query(
        settings, "SELECT status FROM users WHERE user_id_sha256 = ?".replace("?", f"'{digest}'")
    ) == [("deregistered",)]
    assert not (settings.landing / "fit" / ERASED).exists()

    # A late re-delivery dated before the deregistration is dropped, and scrubbed from landing.
    land(
        settings,
        "garmin/push/d3/resend.json",
        {"activities": [activity(ERASED, 9001, T0, 12345.67), activity(KEPT, 9003, T0 + 99, 42.0)]},
    )
    assert run_pipeline(settings, out=io.StringIO())
    assert sorted(r[0] for r in query(settings, "SELECT user_id FROM sessions")) == [KEPT, KEPT]
    assert not [name for name, text in all_text_under(settings.home) if ERASED in text]


def test_permission_change_stops_ingesting_revoked_types(settings):
    changed_at = T0 + 2 * 86400
    land(settings, "garmin/push/p/dailies-before.json", {"dailies": [daily(KEPT, T0, 1000)]})
    land(
        settings,
        "garmin/push/p/permissions.json",
        {
            "userPermissionsChange": [
                {
                    "userId": KEPT,
                    "summaryId": "x-perm",
                    "permissions": ["ACTIVITY_EXPORT"],
                    "changeTimeInSeconds": changed_at,
                }
            ]
        },
    )
    land(
        settings,
        "garmin/push/p/dailies-after.json",
        {"dailies": [daily(KEPT, changed_at + 86400, 2000)]},
    )
    land(
        settings,
        "garmin/push/p/activity-after.json",
        {"activities": [activity(KEPT, 77, changed_at + 100, 1000.0)]},
    )
    assert run_pipeline(settings, out=io.StringIO())
    assert query(settings, "SELECT steps FROM daily_summaries") == [(1000,)]
    assert query(settings, "SELECT count(*) FROM sessions")[0][0] == 1  # activities still allowed
    assert query(
        settings, "SELECT permissions FROM users WHERE user_id = ?".replace("?", f"'{KEPT}'")
    ) == [(["ACTIVITY_EXPORT"],)]


def test_updated_summaries_replace_older_versions(settings, fixtures):
    for n in (2, 1):  # the complete epoch arrives first, the partial one is re-sent later
        name = f"synthetic_push_epochs_update_{n}_{'complete' if n == 2 else 'partial'}.json"
        land(settings, f"garmin/push/e/{n}.json", (fixtures / "garmin" / name).read_bytes())
    sleep = {
        "userId": KEPT,
        "summaryId": "x-sleep-1",
        "calendarDate": "2026-01-01",
        "startTimeInSeconds": T0,
        "durationInSeconds": 25000,
        "validation": "AUTO_TENTATIVE",
    }
    land(settings, "garmin/push/s/1.json", {"sleeps": [{**sleep, "validation": "AUTO_FINAL"}]})
    land(settings, "garmin/push/s/2.json", {"sleeps": [sleep]})
    assert run_pipeline(settings, out=io.StringIO())
    assert query(settings, "SELECT duration_s, steps FROM epochs") == [(900, 590)]
    assert query(settings, "SELECT validation FROM sleep_sessions") == [("AUTO_FINAL",)]
