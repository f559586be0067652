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


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and value.strip().lstrip("-").isdigit()
        ):
            number = int(value)
        # Int64 columns: a larger number is a bad item, not a crash of the whole file.
        if number is not None and INT64_MIN <= number <= INT64_MAX:
            return number
        if number is not None:
            raise FieldError(f"field {key!r}: {value!r:.40} is out of the 64-bit integer range")
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
_TO_SPACES = bytes.maketrans(b'":,', b"   ")
_MAX_DIGITS = 18  # any 18-digit integer fits Int64


def int_map(raw: msgspec.Raw | bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """``{"<int>":<int>,…}`` (compact, integers of at most 18 digits: the common shape of
    Garmin's time-offset maps) as (keys, values) int64 arrays, read with whole-array
    operations; None for anything else (floats, nulls, whitespace, keys that are not plain
    integers, …), which the caller then decodes as JSON. ``raw`` is valid JSON (the body was
    validated whole); keys and values are the integers its text spells."""
    data = memoryview(raw).cast("B")
    if len(data) < 7 or data[0] != 0x7B or data[1] != 0x22 or data[-1] != 0x7D:
        return None
    text = bytes(data[1:-1])
    if text.translate(None, _INT_MAP_BYTES):
        return None  # a byte other than digits, quotes, colons, commas and minus signs
    body = np.frombuffer(text, np.uint8)
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
    key_minus = body[opens + 1] == 0x2D
    key_digits = closes - opens - 1 - key_minus
    value_minus = body[colons + 1] == 0x2D  # values are JSON numbers: -?(0|[1-9][0-9]*) here
    value_digits = np.append(commas, body.size) - colons - 1 - value_minus
    if key_digits.min() < 1 or max(key_digits.max(), value_digits.max()) > _MAX_DIGITS:
        return None
    first = opens + 1 + key_minus
    if np.any((body[first] == 0x2D) | ((body[first] == 0x30) & (key_digits > 1))):
        return None  # "--1", or a leading zero: not how an integer is spelled
    if np.count_nonzero(body == 0x2D) != np.count_nonzero(key_minus) + np.count_nonzero(
        value_minus
    ):
        return None  # a minus sign inside a key
    numbers = np.fromstring(text.translate(_TO_SPACES), dtype=np.int64, sep=" ")
    if numbers.size != 2 * n:
        return None
    return numbers[0::2], numbers[1::2]
