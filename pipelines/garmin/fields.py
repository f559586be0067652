"""Typed extraction of Garmin JSON fields, with errors that name the field and the value.

Bounds every field obeys (a value outside them refuses its item, never raises anything else):

* instants (epoch seconds): from ``MIN_EPOCH_S`` (1989-01-01) to before ``MAX_EPOCH_S``
  (2100-01-01 UTC); the device's UTC offset within ±``MAX_UTC_OFFSET_S``;
* integers within Int64; floats finite or not, but an integer too large for a float refuses;
* text: a lone UTF-16 surrogate (``"\\ud800"``, which ``json.loads`` accepts but UTF-8 cannot
  encode) is replaced by U+FFFD in descriptive strings; identity fields refuse instead
  (``checked_identity``);
* JSON decoded generically (``decode_json``) is at most ``MAX_DEPTH`` levels deep counted from
  the body's outer object (deeper: ``PayloadError`` for the whole body) and has no repeated
  key in any object (a repeated key refuses the item: JSON parsers keep only the last value,
  so the first would be lost silently).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import polars as pl

OFFSET_KEYS = ("startTimeOffsetInSeconds", "offsetInSeconds", "offsetStartTimeInSeconds")


class FieldError(ValueError):
    """A field holds a value of the wrong type."""


class PayloadError(ValueError):
    """The whole body is unusable (not JSON, not an envelope, beyond a stated bound)."""


# 1989-01-01 and 2100-01-01 UTC: no Garmin device recorded earlier, and later is garbage.
MIN_EPOCH_S, MAX_EPOCH_S = 599_616_000, 4_102_444_800
MAX_UTC_OFFSET_S = 86_400  # real zones span -12 h … +14 h
MAX_DEPTH = 64  # JSON nesting, the body's outer object being level 1
MAX_ID_CHARS = 256  # userId, summaryId (Garmin's are UUIDs and short composites)


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
        if isinstance(value, str):
            return value if value.isascii() else text(value)
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return str(value)
            except ValueError:  # more digits than int → str converts
                raise FieldError(f"field {key!r}: an integer too long for text") from None
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
            try:
                number = int(value)
            except ValueError:  # more digits than str → int converts
                raise FieldError(f"field {key!r}: a number too long") from None
        # Int64 columns: a larger number is a bad item, not a crash of the whole file.
        if number is not None and INT64_MIN <= number <= INT64_MAX:
            return number
        if number is not None:
            raise FieldError(f"field {key!r}: {_shown(value)} is out of the 64-bit integer range")
    elif kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise FieldError(f"field {key!r}: {_shown(value)} is too large for a float") from None
    raise FieldError(f"field {key!r}: expected {kind}, got {type(value).__name__} {_shown(value)}")


def _shown(value: Any) -> str:
    """The start of a value for a refusal reason (ints beyond Python's repr digit limit too)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"
    return f"{text(value) if isinstance(value, str) else value!r:.40}"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def is_text(value: str) -> bool:
    """False when ``value`` holds a lone surrogate: no UTF-8 text (Parquet, Polars) can hold
    it. Decoders other than ``json.loads`` refuse such escapes; it decodes them as-is."""
    return value.isascii() or _LONE_SURROGATE.search(value) is None


def text(value: str) -> str:
    """``value`` with any lone surrogate replaced by U+FFFD (as a UTF-8 decoder would)."""
    return value if is_text(value) else _LONE_SURROGATE.sub("\ufffd", value)


def checked_identity(item: dict[str, Any], key: str) -> str | None:
    """An identity field (userId, summaryId) as text; refused when it cannot identify
    anything reliably: a lone surrogate (replacing it could merge two ids) or too long."""
    value = item.get(key)
    if type(value) is str and value.isascii() and len(value) <= MAX_ID_CHARS:
        return value  # the usual id
    if isinstance(value, str) and not is_text(value):
        raise FieldError(f"field {key!r}: not valid Unicode (a lone surrogate)")
    result = coerce(item, key, "str")
    if result is not None and len(result) > MAX_ID_CHARS:
        raise FieldError(f"field {key!r}: longer than {MAX_ID_CHARS} characters")
    return result


def checked_epoch_s(value: int | None, key: str) -> int | None:
    """Epoch seconds within MIN_EPOCH_S … MAX_EPOCH_S, or None; FieldError otherwise."""
    if value is not None and not MIN_EPOCH_S <= value < MAX_EPOCH_S:
        raise FieldError(f"field {key!r}: {value} s is outside 1989-01-01 … 2100-01-01 UTC")
    return value


def epoch_s(item: dict[str, Any], key: str) -> int | None:
    """An instant field of ``item``: integer epoch seconds within the plausible range."""
    return checked_epoch_s(coerce(item, key, "int"), key)


def utc_offset_s(item: dict[str, Any], keys: tuple[str, ...] = OFFSET_KEYS) -> int | None:
    """The device's local offset, whichever of Garmin's spellings carries it."""
    for key in keys:
        if item.get(key) is not None:
            offset = coerce(item, key, "int")
            if abs(offset) > MAX_UTC_OFFSET_S:
                raise FieldError(f"field {key!r}: {offset} s is not a UTC offset")
            return offset
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


def decode_json(raw: msgspec.Raw | bytes, level: int) -> Any:
    """A JSON value of the body, decoded, whose opening bracket is at nesting ``level`` (the
    body's outer object is level 1, an item level 3). Raises PayloadError when it nests
    beyond MAX_DEPTH, FieldError when an object in it repeats a key."""
    data = bytes(raw)
    limit = MAX_DEPTH - level + 1
    # Depth is at most the number of opening brackets: the exact scan only when that could
    # exceed the bound.
    if data.count(b"{") + data.count(b"[") > limit and nesting_depth(data) > limit:
        raise PayloadError(f"nesting deeper than {MAX_DEPTH}")
    value = ITEM_DECODER.decode(data)
    if type(value) is dict and data.count(b":") == len(value):
        return value  # the usual flat object with no colon in its strings: no repeat
    if isinstance(value, dict | list):
        check_unique_keys(data, value)
    return value


def check_unique_keys(data: bytes, value: Any) -> None:
    """FieldError naming a key that an object of ``data`` (``value`` decoded) repeats.

    Every colon of JSON text outside strings ends a key, so the text holds (keys, repeated
    ones included) + (colons inside strings) colons; ``value`` only the keys kept. More
    colons in the text than keys and string colons in ``value`` means a repeated key. (A
    colon escaped as \\u003a counts in ``value`` only: such text can hide a repeat, never
    invent one.)"""
    colons = data.count(b":")
    if isinstance(value, dict) and colons == len(value):
        return  # the usual flat object with no colon in its strings
    if colons > _keys_and_colons(value):
        raise FieldError(f"duplicate key {_repeated_key(data)!r}")


def _keys_and_colons(value: Any) -> int:
    if isinstance(value, str):
        return value.count(":")
    if isinstance(value, dict):
        return sum(1 + key.count(":") + _keys_and_colons(v) for key, v in value.items())
    if isinstance(value, list):
        return sum(map(_keys_and_colons, value))
    return 0


class _Repeated(Exception):
    pass


def _raise_on_repeat(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Repeated(key)
        seen.add(key)
    return dict(pairs)


def _repeated_key(data: bytes) -> str:
    try:
        json.loads(data, object_pairs_hook=_raise_on_repeat)
    except _Repeated as exc:
        return text(exc.args[0])
    return "?"  # only when an escaped colon hides it; the count still saw a repeat


# Bytes the depth scan keeps: brackets and quotes; everything else is deleted before it.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'{}[]"')
_DEPTH_STEP = np.zeros(256, np.int8)
_DEPTH_STEP[[0x7B, 0x5B]] = 1
_DEPTH_STEP[[0x7D, 0x5D]] = -1
_SCAN_CHUNK = 1 << 22


def nesting_depth(data: bytes) -> int:
    """Deepest bracket nesting of JSON text, brackets inside strings not counted: whole-array
    operations over the brackets and quotes only, a few MB at a time."""
    if b"\\" in data:  # escapes: drop escaped backslashes, then escaped quotes
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = np.frombuffer(data.translate(None, _NOT_STRUCTURE), np.uint8)
    depth, inside, deepest = 0, False, 0
    for start in range(0, marks.size, _SCAN_CHUNK):
        part = marks[start : start + _SCAN_CHUNK]
        quoted = np.logical_xor.accumulate(part == 0x22)  # True from an opening quote on
        if inside:
            quoted = ~quoted
        step = _DEPTH_STEP[part]
        step[quoted] = 0
        levels = np.cumsum(step, dtype=np.int64)
        levels += depth
        deepest = max(deepest, int(levels.max()))
        depth, inside = int(levels[-1]), bool(quoted[-1])
    return deepest


class Undecoded:
    """An item's value kept as its JSON text (``msgspec.Raw``: a slice of the body, no copy)
    until it is needed: the bulky time-offset maps and activity samples, which are read in
    whole-array operations when they are plain, and decoded to Python objects otherwise.
    ``level``: the nesting level of its opening bracket (see ``decode_json``)."""

    __slots__ = ("level", "raw")

    def __init__(self, raw: msgspec.Raw, level: int) -> None:
        self.raw = raw
        self.level = level

    def decode(self) -> Any:
        return decode_json(self.raw, self.level)


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
