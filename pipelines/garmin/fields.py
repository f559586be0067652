"""Typed extraction of Garmin JSON fields, with errors that name the field and the value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

OFFSET_KEYS = ("startTimeOffsetInSeconds", "offsetInSeconds", "offsetStartTimeInSeconds")


class FieldError(ValueError):
    """A field holds a value of the wrong type."""


_DTYPES: dict[str, pl.DataType] = {
    "int": pl.Int64(),
    "float": pl.Float64(),
    "str": pl.String(),
    "bool": pl.Boolean(),
}


def polars_dtype(kind: str) -> pl.DataType:
    return _DTYPES[kind]


def coerce(item: dict[str, Any], key: str, kind: str) -> Any:
    """Value of ``key`` converted to ``kind``; None when absent or null."""
    value = item.get(key)
    if value is None:
        return None
    if kind == "str":
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise FieldError(f"field {key!r}: expected {kind}, got {type(value).__name__} {value!r:.40}")


def utc_offset_s(item: dict[str, Any], keys: tuple[str, ...] = OFFSET_KEYS) -> int | None:
    """The device's local offset, whichever of Garmin's spellings carries it."""
    for key in keys:
        if item.get(key) is not None:
            return coerce(item, key, "int")
    return None


def utc_from_epoch(seconds: int | float | None) -> datetime | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def local_from_epoch(seconds: int | float | None, offset_s: int | None) -> datetime | None:
    """Wall-clock time on the device: naive, because it is not UTC."""
    if seconds is None or offset_s is None:
        return None
    return datetime(1970, 1, 1) + timedelta(seconds=seconds + offset_s)
