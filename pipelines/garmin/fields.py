"""Typed extraction of Garmin JSON fields, with errors that name the field and the value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
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


# What json.loads decodes, to the same values (arbitrary-size ints, correctly rounded floats, the
# last value of a repeated key); it refuses the rest (NaN, Infinity, lone surrogates, …).
ITEM_DECODER = msgspec.json.Decoder()


class Undecoded:
    """An item's value kept as its JSON text (``msgspec.Raw``: a slice of the body, no copy)
    until it is needed: the bulky time-offset maps and activity samples, which are read in
    whole-array operations when they are plain, and decoded to Python objects otherwise."""

    __slots__ = ("raw",)

    def __init__(self, raw: msgspec.Raw) -> None:
        self.raw = raw

    def decode(self) -> Any:
        return ITEM_DECODER.decode(self.raw)


def decoded(value: Any) -> Any:
    return value.decode() if isinstance(value, Undecoded) else value


_INT_MAP_BYTES = b'0123456789":,-'
_MAX_DIGITS = 18  # any 18-digit integer fits Int64


def int_map(raw: msgspec.Raw | bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """``{"<int>":<int>,…}`` (compact, canonical integers of at most 18 digits: the common
    shape of Garmin's time-offset maps) as (keys, values) int64 arrays, read with whole-array
    operations; None for anything else (floats, nulls, whitespace, other keys, …), which the
    caller then decodes as JSON. Keys and values are the integers the JSON text spells."""
    data = memoryview(raw).cast("B")
    n_bytes = len(data)
    if n_bytes < 7 or data[0] != 0x7B or data[1] != 0x22 or data[-1] != 0x7D:
        return None
    body = np.frombuffer(data, np.uint8)[1:-1]
    if bytes(data[1:-1]).translate(None, _INT_MAP_BYTES):
        return None  # a byte other than digits, quotes, colons, commas and minus signs
    quotes = np.flatnonzero(body == 0x22)
    colons = np.flatnonzero(body == 0x3A)
    commas = np.flatnonzero(body == 0x2C)
    n = colons.size
    if quotes.size != 2 * n or commas.size != n - 1:
        return None
    opens, closes = quotes[0::2], quotes[1::2]
    # Every key opens the body or follows a comma and closes right before its colon: so every
    # quote, colon and comma is structural and keys and values hold only digits and minus signs.
    if opens[0] != 0 or not np.array_equal(opens[1:], commas + 1):
        return None
    if not np.array_equal(closes, colons - 1):
        return None
    digits = body.astype(np.int64) - 0x30
    keys = _int_tokens(body, digits, opens + 1, closes)
    values = _int_tokens(body, digits, colons + 1, np.append(commas, body.size))
    if keys is None or values is None:
        return None
    if np.count_nonzero(body == 0x2D) != keys[1] + values[1]:
        return None  # a minus sign inside a number
    return keys[0], values[0]


def _int_tokens(
    body: np.ndarray, digits: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, int] | None:
    """Canonical integers ``-?(0|[1-9][0-9]*)`` in body[start:end] → (values, minus signs)."""
    negative = body[np.minimum(start, body.size - 1)] == 0x2D
    first = start + negative
    length = end - first
    if length.min() < 1 or length.max() > _MAX_DIGITS:
        return None
    if np.any((digits[first] == 0) & (length > 1)):
        return None  # leading zero: not how JSON or Python spell an integer
    value = np.zeros(start.size, np.int64)
    last = body.size - 1
    for k in range(int(length.max())):
        value = np.where(k < length, value * 10 + digits[np.minimum(first + k, last)], value)
    return np.where(negative, -value, value), int(np.count_nonzero(negative))
