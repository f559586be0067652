"""Every Garmin URL path wearhouse calls, in one place (as public clients use them).

Paths are relative to the API base (``WEARHOUSE_GARMIN_API_URL``); the OAuth authorize and
token URLs are absolute and configured on their own (``config.py``).
"""

from __future__ import annotations

from urllib.parse import quote

# Training API V2: a workout is created on the workout portal, then read, updated and deleted
# under the training API; a schedule puts one workout on one date of the athlete's calendar.
WORKOUT_CREATE = "/workoutportal/workout/v2"
SCHEDULE_CREATE = "/training-api/schedule"

# User endpoints (Health/Activity API).
USER_ID = "/wellness-api/rest/user/id"
USER_PERMISSIONS = "/wellness-api/rest/user/permissions"
USER_REGISTRATION = "/wellness-api/rest/user/registration"


def _segment(value: str | int) -> str:
    # Ids come from Garmin's answers or our own state; quoted so no value can add a path part.
    return quote(str(value), safe="")


def workout(workout_id: str | int) -> str:
    return f"/training-api/workout/v2/{_segment(workout_id)}"


def schedule(schedule_id: str | int) -> str:
    return f"/training-api/schedule/{_segment(schedule_id)}"


def backfill(summary_type: str) -> str:
    """``GET`` with ``summaryStartTimeInSeconds`` / ``summaryEndTimeInSeconds``: 202 accepted,
    409 already requested, 403 no HISTORICAL_DATA_EXPORT permission."""
    return f"/wellness-api/rest/backfill/{_segment(summary_type)}"
