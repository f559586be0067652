"""Decode a FIT file with fitdecode into typed frames: file, sessions, laps, records, events.

Recovery first: a file that fails its CRC or ends early keeps every message that decoded and
says so in ``integrity``; only a file with nothing usable raises ``FitUnusable``.

Contract, for any byte input: ``decode_fit`` returns a ``FitDecoded`` (integrity != "ok" and a
``problem`` when it was damaged, every message that decoded kept) or raises ``FitUnusable``
with the reason; no other exception leaves it (tests/test_fit_fuzz.py, benchmarks/fuzz_fit.py).

Resource bounds, checked before the work they bound:

* ``MAX_FIT_BYTES``: the largest FIT file decoded (after gzip decompression). ``.fit.gz`` is
  decompressed in bounded steps (``read_fit_bytes``, ``gunzip_bounded``) that stop at the
  bound and at ``MAX_COMPRESSION_RATIO``, so a gzip bomb never expands in memory.
* A header's data size is a claim, not an allocation: both decoders read what is present and
  a claim beyond it is reported as truncation.
* ``MAX_FIT_MESSAGES``: data messages per file; more makes the file unusable.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import fitdecode
import polars as pl

SEMICIRCLE_TO_DEG = 180.0 / 2**31
DECODER_ENV = "WEARHOUSE_FIT_DECODER"  # "fast" (default) or "fitdecode"

#: Largest FIT file decoded, in bytes after decompression. Real activities are far smaller
#: (a 24 h ride recorded every second is about 5 MiB); the bound keeps one hostile file from
#: taking a worker's memory (the fitdecode path holds a few times the file in Python objects).
MAX_FIT_BYTES = 256 << 20
#: Most data messages decoded from one file (all FIT files of a chain together). A week
#: recorded every second, with hrv messages beside the records, stays well below it.
MAX_FIT_MESSAGES = 2_000_000
#: gzip: decompressed size at most this multiple of the compressed size. FIT files compress
#: a few times; a far higher ratio is a decompression bomb. Checked once the output passes
#: COMPRESSION_RATIO_FLOOR, so that tiny files never trip it.
MAX_COMPRESSION_RATIO = 200
COMPRESSION_RATIO_FLOOR = 1 << 20
#: Reading step for files and decompression output.
_CHUNK = 1 << 20
#: Prefix of the reason (``FitUnusable``) or problem (integrity "decoder_error") given when an
#: unexpected exception inside the decoder is contained: a bug to fix, never a crash.
INTERNAL_ERROR_PREFIX = "decoder error"

TS = pl.Datetime("ms", "UTC")

SESSION_SCHEMA: dict[str, pl.DataType] = {
    "session_index": pl.Int64(),
    "sport": pl.String(),
    "sub_sport": pl.String(),
    "start_time_utc": TS,
    "end_time_utc": TS,
    "total_elapsed_time_s": pl.Float64(),
    "total_timer_time_s": pl.Float64(),
    "total_distance_m": pl.Float64(),
    "avg_hr_bpm": pl.Float64(),
    "max_hr_bpm": pl.Float64(),
    "avg_speed_mps": pl.Float64(),
    "total_ascent_m": pl.Float64(),
    "total_descent_m": pl.Float64(),
    "first_lap_index": pl.Int64(),
    "num_laps": pl.Int64(),
    # Which FIT file of a chained file (several FIT files back to back) the message is in.
    "chain_index": pl.Int64(),
}

LAP_SCHEMA: dict[str, pl.DataType] = {
    "lap_index": pl.Int64(),
    "start_time_utc": TS,
    "end_time_utc": TS,
    "total_elapsed_time_s": pl.Float64(),
    "total_timer_time_s": pl.Float64(),
    "total_distance_m": pl.Float64(),
    "avg_hr_bpm": pl.Float64(),
    "max_hr_bpm": pl.Float64(),
    "avg_speed_mps": pl.Float64(),
    "lap_trigger": pl.String(),
    "intensity": pl.String(),
    "wkt_step_index": pl.Int64(),
    "chain_index": pl.Int64(),  # as in SESSION_SCHEMA
}

RECORD_SCHEMA: dict[str, pl.DataType] = {
    "record_index": pl.Int64(),
    "time_utc": TS,
    "distance_m": pl.Float64(),
    "speed_mps": pl.Float64(),
    "hr_bpm": pl.Float64(),
    "cadence": pl.Float64(),
    "power_w": pl.Float64(),
    "elevation_m": pl.Float64(),
    "lat_deg": pl.Float64(),
    "lon_deg": pl.Float64(),
    "temperature_c": pl.Float64(),
    "chain_index": pl.Int64(),  # as in SESSION_SCHEMA
}

# Everything else a record carried, beside its typed columns (joined on record_index).
RECORD_FIELDS_SCHEMA: dict[str, pl.DataType] = {
    "record_index": pl.Int64(),
    "extra_json": pl.String(),  # other profile fields (running dynamics, balance, …)
    "developer_json": pl.String(),  # developer fields (Stryd power, …) as name → value
}

# Fields of other message types, kept typed by the generic row builder below.
DEVICE_SCHEMA: dict[str, pl.DataType] = {
    "time_utc": TS,
    "device_index": pl.String(),
    "device_type": pl.String(),
    "manufacturer": pl.String(),
    "product": pl.String(),
    "serial_number": pl.Int64(),
    "software_version": pl.Float64(),
    "battery_status": pl.String(),
    "source_type": pl.String(),
}
WORKOUT_SCHEMA: dict[str, pl.DataType] = {
    "wkt_name": pl.String(),
    "sport": pl.String(),
    "sub_sport": pl.String(),
    "num_valid_steps": pl.Int64(),
}
WORKOUT_STEP_SCHEMA: dict[str, pl.DataType] = {
    "message_index": pl.Int64(),
    "wkt_step_name": pl.String(),
    "intensity": pl.String(),
    "duration_type": pl.String(),
    "duration_time_s": pl.Float64(),
    "duration_distance_m": pl.Float64(),
    "duration_value": pl.Float64(),  # raw: repeat-from step, HR, calories … by duration_type
    "target_type": pl.String(),
    "target_value": pl.Float64(),
    "custom_target_value_low": pl.Float64(),
    "custom_target_value_high": pl.Float64(),
    "notes": pl.String(),
}
LENGTH_SCHEMA: dict[str, pl.DataType] = {
    "message_index": pl.Int64(),
    "start_time_utc": TS,
    "end_time_utc": TS,
    "total_elapsed_time_s": pl.Float64(),
    "total_timer_time_s": pl.Float64(),
    "total_strokes": pl.Int64(),
    "avg_speed_mps": pl.Float64(),
    "swim_stroke": pl.String(),
    "avg_swimming_cadence": pl.Float64(),
    "length_type": pl.String(),
    "chain_index": pl.Int64(),  # as in SESSION_SCHEMA
}
HRV_SCHEMA: dict[str, pl.DataType] = {
    "hrv_index": pl.Int64(),  # order of the beat-to-beat interval in the file
    "rr_s": pl.Float64(),
}

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "time_utc": TS,
    "event": pl.String(),
    "event_type": pl.String(),
    "timer_trigger": pl.String(),
    "chain_index": pl.Int64(),  # as in SESSION_SCHEMA
}

FILE_SCHEMA: dict[str, pl.DataType] = {
    "file_type": pl.String(),
    "manufacturer": pl.String(),
    "product": pl.String(),
    "serial_number": pl.Int64(),
    "time_created_utc": TS,
    "utc_offset_s": pl.Int64(),
    "utc_offset_source": pl.String(),
    "time_base": pl.String(),  # utc, or device-relative clock anchored on local time
    "integrity": pl.String(),
    "problem": pl.String(),
    "n_records_without_timestamp": pl.Int64(),
}


class FitUnusable(ValueError):
    """Nothing usable could be read from the file (or it exceeds a resource bound)."""


@dataclass
class FitDecoded:
    file: pl.DataFrame
    sessions: pl.DataFrame
    laps: pl.DataFrame
    records: pl.DataFrame
    events: pl.DataFrame
    record_fields: pl.DataFrame
    device_info: pl.DataFrame
    workouts: pl.DataFrame
    workout_steps: pl.DataFrame
    lengths: pl.DataFrame
    hrv: pl.DataFrame
    integrity: str = "ok"
    problem: str | None = None
    decoder: str = "fitdecode"  # or "fast": records decoded by pipelines.fit.fast_records
    tables: dict[str, pl.DataFrame] = field(init=False)

    def __post_init__(self) -> None:
        self.tables = {
            "fit_files": self.file,
            "fit_sessions": self.sessions,
            "fit_laps": self.laps,
            "fit_records": self.records,
            "fit_events": self.events,
            "fit_record_fields": self.record_fields,
            "fit_device_info": self.device_info,
            "fit_workouts": self.workouts,
            "fit_workout_steps": self.workout_steps,
            "fit_lengths": self.lengths,
            "fit_hrv": self.hrv,
        }


def _value(message: fitdecode.FitDataMessage, *names: str) -> Any:
    """First non-null of the named fields (``enhanced_*`` is listed first where it exists)."""
    for name in names:
        if message.has_field(name):
            value = message.get_value(name, fallback=None)
            if value is not None and not isinstance(value, tuple):
                return value
    return None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _degrees(value: Any) -> float | None:
    return value * SEMICIRCLE_TO_DEG if isinstance(value, int) else None


# FIT timestamps below 0x10000000 are seconds since device power-up, not since the FIT epoch.
_RELATIVE_LIMIT = 0x10000000
_MAX_OFFSET_S = 14 * 3600


class _Clock:
    """Turns fitdecode timestamps into epoch seconds, resolving device-relative ones later."""

    def __init__(self) -> None:
        self.relative_seen = False

    def __call__(self, value: Any) -> float | None:
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _RELATIVE_LIMIT:
            self.relative_seen = True
            return -1.0 - value  # negative marks "relative"; resolved by _anchor
        return None


def _anchor(seconds: float | None, anchor: float | None) -> float | None:
    if seconds is None or seconds >= 0:
        return seconds
    return None if anchor is None else anchor + (-1.0 - seconds)


GZIP_MAGIC = b"\x1f\x8b"


def _size_text(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB" if n >= 1 << 20 else f"{n:,} bytes"


def _gunzip_chunks(chunks: Iterable[bytes], limit: int | None = None) -> bytes:
    """Decompress a gzip stream given as compressed chunks (several members allowed, zero
    padding after a member ignored, as ``gzip.decompress`` does), holding at most ``limit``
    bytes of output: zlib produces at most ``_CHUNK`` bytes per step (``max_length``) and the
    size and ratio bounds are checked after every step, so a bomb stops at the bound."""
    limit = MAX_FIT_BYTES if limit is None else limit
    out = io.BytesIO()
    produced = taken = 0  # output bytes so far; compressed bytes fed so far
    inflater = None  # the current gzip member's decompressor
    for chunk in chunks:
        taken += len(chunk)
        pending = chunk
        while True:
            if inflater is None:
                pending = pending.lstrip(b"\x00")
                if not pending:
                    break
                inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
            try:
                piece = inflater.decompress(pending, _CHUNK)
            except zlib.error as exc:
                raise FitUnusable(f"gzip could not be read: {exc}") from exc
            produced += len(piece)
            if produced > limit:
                raise FitUnusable(
                    f"gzip expands beyond the {_size_text(limit)} limit for a FIT file"
                )
            if produced > COMPRESSION_RATIO_FLOOR and produced > MAX_COMPRESSION_RATIO * taken:
                raise FitUnusable(
                    f"gzip expands more than {MAX_COMPRESSION_RATIO}x "
                    f"({_size_text(taken)} to more than {_size_text(produced)}): "
                    "a decompression bomb, not a FIT file"
                )
            out.write(piece)
            if inflater.eof:
                pending, inflater = inflater.unused_data, None
                continue
            pending = inflater.unconsumed_tail
            if not pending and len(piece) < _CHUNK:
                break  # everything fed was used: the next chunk is needed
    if inflater is not None:
        raise FitUnusable("gzip could not be read: compressed data ends early")
    return out.getvalue()


def gunzip_bounded(raw: bytes, limit: int | None = None) -> bytes:
    """``gzip.decompress(raw)`` with the size and ratio bounds; ``FitUnusable`` beyond them."""
    return _gunzip_chunks((raw[i : i + _CHUNK] for i in range(0, len(raw), _CHUNK)), limit)


def read_fit_bytes(path: Path) -> bytes:
    """The FIT bytes of a landing file (``.fit`` or gzip-compressed), read within the bounds.

    Raises ``FitUnusable`` with the reason when the file (or what its gzip expands to) is
    larger than ``MAX_FIT_BYTES`` or expands more than ``MAX_COMPRESSION_RATIO``; gzip is
    decompressed incrementally and reading stops at the bound, so memory stays within it.
    ``OSError`` (missing or unreadable file) is left to the caller.
    """
    with open(path, "rb") as handle:
        if handle.read(2) != GZIP_MAGIC:
            _check_size(os.fstat(handle.fileno()).st_size)
            handle.seek(0)
            data = handle.read(MAX_FIT_BYTES + 1)  # the file may grow after the check
            _check_size(len(data))
            return data
        handle.seek(0)
        return _gunzip_chunks(iter(lambda: handle.read(_CHUNK), b""))


def _check_size(size: int) -> None:
    if size > MAX_FIT_BYTES:
        raise FitUnusable(
            f"file of {_size_text(size)} exceeds the {_size_text(MAX_FIT_BYTES)} "
            "limit for a FIT file"
        )


def _open(raw: bytes) -> bytes:
    """The FIT bytes of ``raw`` (gzip decompressed), within MAX_FIT_BYTES."""
    if raw[:2] == GZIP_MAGIC:
        return gunzip_bounded(raw)
    _check_size(len(raw))
    return raw


def _classify_error(exc: Exception) -> str:
    if isinstance(exc, fitdecode.FitCRCError):
        return "crc_mismatch"
    if isinstance(exc, fitdecode.FitEOFError):
        return "truncated"
    if isinstance(exc, fitdecode.FitHeaderError):
        return "corrupt_header"
    return "corrupt_data"


def decode_fit(raw: bytes) -> FitDecoded:
    """Decode a FIT file: the vectorized record path with fitdecode for everything else, or
    fitdecode alone when WEARHOUSE_FIT_DECODER=fitdecode. Same output either way (the fast
    path is tested against fitdecode as its oracle, and falls back to it on any doubt).

    Returns a ``FitDecoded`` or raises ``FitUnusable``, whatever the bytes: an unexpected
    exception inside the decoders is contained here as a ``FitUnusable`` whose reason starts
    with ``INTERNAL_ERROR_PREFIX`` and names the exception."""
    try:
        if os.environ.get(DECODER_ENV, "fast") == "fitdecode":
            return decode_fit_fitdecode(raw)
        return decode_fit_fast(raw, decode_fit_fitdecode)
    except FitUnusable:
        raise
    except Exception as exc:  # the last line of defence: one file never stops the pipeline
        raise FitUnusable(f"{INTERNAL_ERROR_PREFIX}: {type(exc).__name__}: {exc}") from exc


def _too_many_messages() -> FitUnusable:
    return FitUnusable(
        f"more than {MAX_FIT_MESSAGES:,} data messages: beyond the limit for one FIT file"
    )


_UNCONVERTIBLE = (TypeError, ValueError, OverflowError, OSError)


class _TolerantProcessor(fitdecode.DefaultDataProcessor):
    """fitdecode's default processing, except that a value it cannot convert stays raw.

    A corrupt definition can give a date/time field a tuple, a string or an out-of-range
    number; fitdecode's processor then raises (TypeError, OverflowError, ...) and the read
    stops. Leaving that one value unconverted keeps the rest of the file; decode_fit ignores
    such a value (``_Clock`` takes only datetimes and small ints). Values it can convert are
    converted exactly as by the default processor.
    """

    def process_type_date_time(self, reader, field_data):
        with contextlib.suppress(*_UNCONVERTIBLE):
            super().process_type_date_time(reader, field_data)

    def process_type_local_date_time(self, reader, field_data):
        with contextlib.suppress(*_UNCONVERTIBLE):
            super().process_type_local_date_time(reader, field_data)

    def process_type_localtime_into_day(self, reader, field_data):
        with contextlib.suppress(*_UNCONVERTIBLE):
            super().process_type_localtime_into_day(reader, field_data)

    def process_message_hr(self, reader, data_message):
        with contextlib.suppress(*_UNCONVERTIBLE):
            super().process_message_hr(reader, data_message)


def _frames(reader: fitdecode.FitReader) -> Iterator[Any]:
    """fitdecode's frames. On some corrupt input fitdecode fails with something other than a
    FitError (``ValueError('size')`` for a zero-size field, an AssertionError for a message
    crossing the end of its body, struct errors, ...): that is corrupt data at the message
    being read, raised as the FitParseError fitdecode would give for it."""
    frames = iter(reader)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except fitdecode.FitError:
            raise
        except Exception as exc:
            offset = getattr(reader, "_chunk_offset", "?")
            message = f"fitdecode failed: {type(exc).__name__}: {exc}".rstrip(": ")
            raise fitdecode.FitParseError(offset, message) from exc
        yield frame


def _rr_values(value: Any) -> list[float]:
    """The beat-to-beat intervals of one hrv ``time`` value: fitdecode gives a tuple for the
    usual array field, a single number when the device defined the field with one element,
    and None for invalid entries."""
    values = value if isinstance(value, (tuple, list)) else (value,)
    return [
        float(v)
        for v in values
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ]


def decode_fit_fitdecode(raw: bytes) -> FitDecoded:
    """Decode every valid message with fitdecode; classify what went wrong with the rest."""
    if not raw:
        raise FitUnusable("empty file (0 bytes)")
    data = _open(raw)
    if len(data) < 12 or data[8:12] != b".FIT":
        raise FitUnusable("not a FIT file (no '.FIT' signature in the header)")

    clock = _Clock()
    file_info: dict[str, Any] = {}
    sessions: list[dict] = []
    laps: list[dict] = []
    records: list[dict] = []
    events: list[dict] = []
    activity_times: list[tuple[float | None, float | None]] = []  # (timestamp, local_timestamp)
    generic: dict[str, list[dict]] = {table: [] for table, _, _ in _GENERIC.values()}
    hrv: list[dict] = []
    record_fields: list[dict] = []
    settings_offset: int | None = None  # device_settings.time_zone_offset, a fallback
    no_timestamp = 0
    n_messages = 0
    integrity, problem = "ok", None
    chain = -1  # index of the current FIT file of a chained file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fitdecode.FitReader(
                io.BytesIO(data),
                processor=_TolerantProcessor(),
                check_crc=fitdecode.CrcCheck.RAISE,
                error_handling=fitdecode.ErrorHandling.WARN,
            ) as reader:
                for frame in _frames(reader):
                    if isinstance(frame, fitdecode.FitHeader):
                        chain += 1
                        continue
                    if not isinstance(frame, fitdecode.FitDataMessage):
                        continue
                    n_messages += 1
                    if n_messages > MAX_FIT_MESSAGES:
                        raise _too_many_messages()
                    try:
                        name = frame.name
                        if name == "record":
                            ts = clock(_value(frame, "timestamp"))
                            if ts is None:
                                no_timestamp += 1
                                continue
                            records.append(
                                {
                                    "record_index": len(records),
                                    "time_utc": ts,
                                    "distance_m": _num(_value(frame, "distance")),
                                    "speed_mps": _num(_value(frame, "enhanced_speed", "speed")),
                                    "hr_bpm": _num(_value(frame, "heart_rate")),
                                    "cadence": _num(_value(frame, "cadence")),
                                    "power_w": _num(_value(frame, "power")),
                                    "elevation_m": _num(
                                        _value(frame, "enhanced_altitude", "altitude")
                                    ),
                                    "lat_deg": _degrees(_value(frame, "position_lat")),
                                    "lon_deg": _degrees(_value(frame, "position_long")),
                                    "temperature_c": _num(_value(frame, "temperature")),
                                    "chain_index": chain,
                                }
                            )
                            leftovers = _leftovers(frame)
                            if leftovers:
                                record_fields.append(
                                    {"record_index": len(records) - 1, **leftovers}
                                )
                        elif name == "lap":
                            laps.append(
                                _summary_row(frame, clock, len(laps), "lap_index", LAP_SCHEMA)
                                | {"chain_index": chain}
                            )
                        elif name == "session":
                            sessions.append(
                                _summary_row(
                                    frame, clock, len(sessions), "session_index", SESSION_SCHEMA
                                )
                                | {"chain_index": chain}
                            )
                        elif name == "event":
                            events.append(
                                {
                                    "time_utc": clock(_value(frame, "timestamp")),
                                    "event": _text(_value(frame, "event")),
                                    "event_type": _text(_value(frame, "event_type")),
                                    "timer_trigger": _text(_value(frame, "timer_trigger")),
                                    "chain_index": chain,
                                }
                            )
                        elif name == "file_id" and not file_info:
                            file_info = {
                                "file_type": _text(_value(frame, "type")),
                                "manufacturer": _text(_value(frame, "manufacturer")),
                                "product": _text(_value(frame, "garmin_product", "product")),
                                "serial_number": _value(frame, "serial_number"),
                                "time_created_utc": clock(_value(frame, "time_created")),
                            }
                        elif name in _GENERIC:
                            table, schema, renames = _GENERIC[name]
                            row = _generic_row(frame, schema, renames, clock)
                            if "chain_index" in schema:
                                row["chain_index"] = chain
                            generic[table].append(row)
                        elif name == "device_settings":
                            zone = frame.get_value("time_zone_offset", fallback=None)
                            zone = zone[0] if isinstance(zone, tuple) and zone else zone
                            if isinstance(zone, (int, float)) and settings_offset is None:
                                settings_offset = round(zone * 3600)  # profile unit: hours
                        elif name == "hrv":
                            for rr in _rr_values(frame.get_value("time", fallback=None)):
                                hrv.append({"hrv_index": len(hrv), "rr_s": rr})
                        elif name == "activity":
                            local = _value(frame, "local_timestamp")
                            activity_times.append(
                                (
                                    clock(_value(frame, "timestamp")),
                                    local.timestamp() if isinstance(local, datetime) else None,
                                )
                            )
                    except Exception as exc:  # a decoder bug: keep what decoded before
                        offset = getattr(reader, "_chunk_offset", "?")
                        integrity = "decoder_error"
                        problem = f"{INTERNAL_ERROR_PREFIX} @ {offset}: {type(exc).__name__}: {exc}"
                        break
        except fitdecode.FitError as exc:
            integrity, problem = _classify_error(exc), str(exc)
            if not (file_info or records or sessions or laps):
                raise FitUnusable(f"{integrity}: {exc}") from exc
    if integrity == "ok" and caught:
        integrity, problem = "decoded_with_warnings", str(caught[0].message)

    if not file_info and not (records or sessions or laps):
        raise FitUnusable("no FIT messages decoded")

    # The device's UTC offset: activity.local_timestamp - activity.timestamp, when plausible.
    offset, offset_source, anchor, time_base = None, None, None, "utc"
    for utc_s, local_s in activity_times:
        if utc_s is None or local_s is None:
            continue
        if utc_s < 0:
            # Device without a real clock: only local wall time is known.
            anchor, time_base = local_s - (-1.0 - utc_s), "device_relative_anchored_local"
            break
        candidate = round(local_s - utc_s)
        if abs(candidate) <= _MAX_OFFSET_S:
            offset, offset_source = candidate, "activity.local_timestamp"
            break
        offset_source = "activity.local_timestamp implausible; ignored"
    if offset is None and settings_offset is not None and abs(settings_offset) <= _MAX_OFFSET_S:
        offset, offset_source = settings_offset, "device_settings.time_zone_offset"
    if clock.relative_seen and anchor is None:
        time_base = "device_relative_unanchored"

    def resolve(rows: list[dict], columns: tuple[str, ...]) -> list[dict]:
        if clock.relative_seen:
            for row in rows:
                for column in columns:
                    row[column] = _anchor(row[column], anchor)
        return rows

    resolve(records, ("time_utc",))
    resolve(laps, ("start_time_utc", "end_time_utc"))
    resolve(sessions, ("start_time_utc", "end_time_utc"))
    resolve(events, ("time_utc",))
    resolve(generic["device_info"], ("time_utc",))
    resolve(generic["lengths"], ("start_time_utc", "end_time_utc"))
    if file_info:
        resolve([file_info], ("time_created_utc",))
    if clock.relative_seen and anchor is None:
        records = [r for r in records if r["time_utc"] is not None]

    file_row = {
        **{k: None for k in FILE_SCHEMA},
        **file_info,
        "utc_offset_s": offset,
        "utc_offset_source": offset_source,
        "time_base": time_base,
        "integrity": integrity,
        "problem": problem,
        "n_records_without_timestamp": no_timestamp,
    }
    if not isinstance(file_row["serial_number"], int):
        file_row["serial_number"] = None
    return FitDecoded(
        file=_frame([file_row], FILE_SCHEMA),
        sessions=_frame(sessions, SESSION_SCHEMA),
        laps=_frame(laps, LAP_SCHEMA),
        records=_frame(records, RECORD_SCHEMA),
        events=_frame(events, EVENT_SCHEMA),
        record_fields=pl.DataFrame(record_fields, schema=RECORD_FIELDS_SCHEMA),
        device_info=_frame(generic["device_info"], DEVICE_SCHEMA),
        workouts=_frame(generic["workouts"], WORKOUT_SCHEMA),
        workout_steps=_frame(generic["workout_steps"], WORKOUT_STEP_SCHEMA),
        lengths=_frame(generic["lengths"], LENGTH_SCHEMA),
        hrv=pl.DataFrame(hrv, schema=HRV_SCHEMA),
        integrity=integrity,
        problem=problem,
    )


# Record fields that have typed columns (everything else goes to extra_json).
_RECORD_TYPED = frozenset(
    {
        "timestamp",
        "distance",
        "enhanced_speed",
        "speed",
        "heart_rate",
        "cadence",
        "power",
        "enhanced_altitude",
        "altitude",
        "position_lat",
        "position_long",
        "temperature",
    }
)

# message → (table, schema, {column: profile field names, first non-null wins})
_GENERIC: dict[str, tuple[str, dict, dict[str, tuple[str, ...]]]] = {
    "device_info": (
        "device_info",
        DEVICE_SCHEMA,
        {
            "time_utc": ("timestamp",),
            "product": ("garmin_product", "product"),
        },
    ),
    "workout": ("workouts", WORKOUT_SCHEMA, {}),
    "workout_step": (
        "workout_steps",
        WORKOUT_STEP_SCHEMA,
        {
            "duration_time_s": ("duration_time",),
            "duration_distance_m": ("duration_distance",),
        },
    ),
    "length": (
        "lengths",
        LENGTH_SCHEMA,
        {
            "start_time_utc": ("start_time",),
            "end_time_utc": ("timestamp",),
            "total_elapsed_time_s": ("total_elapsed_time",),
            "total_timer_time_s": ("total_timer_time",),
            "avg_speed_mps": ("enhanced_avg_speed", "avg_speed"),
        },
    ),
}


def _plain(value: Any) -> Any:
    """A field value as JSON can hold it."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def _leftovers(frame: fitdecode.FitDataMessage) -> dict[str, str | None]:
    """Record fields without a typed column, and developer fields, as JSON (nulls dropped);
    empty when there are none."""
    extra, developer = {}, {}
    for data in frame.fields:
        if data.value is None or data.name in _RECORD_TYPED:
            continue
        # A damaged developer-field description can name a field with a tuple, which JSON
        # cannot take as a key (a missing name stays None: JSON writes it as "null").
        name = str(data.name) if isinstance(data.name, tuple) else data.name
        if isinstance(data.field_def, fitdecode.types.DevFieldDefinition):
            developer[name] = _plain(data.value)
        elif not name.startswith("unknown_"):
            extra[name] = _plain(data.value)
    if not (extra or developer):
        return {}
    return {
        "extra_json": json.dumps(extra) if extra else None,
        "developer_json": json.dumps(developer) if developer else None,
    }


def _generic_row(
    frame: fitdecode.FitDataMessage, schema: dict, renames: dict, clock: _Clock
) -> dict[str, Any]:
    row = {}
    for column, dtype in schema.items():
        value = _value(frame, *renames.get(column, (column,)))
        if dtype == TS:
            row[column] = clock(value)
        elif dtype == pl.String():
            row[column] = _text(value)
        elif dtype == pl.Int64():
            row[column] = value if isinstance(value, int) and not isinstance(value, bool) else None
        else:
            row[column] = _num(value)
    return row


def _frame(rows: list[dict], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Rows to a typed frame; timestamp columns arrive as epoch seconds (float)."""
    time_columns = [name for name, dtype in schema.items() if dtype == TS]
    raw_schema = {
        name: (pl.Float64() if name in time_columns else dtype) for name, dtype in schema.items()
    }
    frame = pl.DataFrame(rows, schema=raw_schema)
    return frame.with_columns(
        [(pl.col(c) * 1000).round().cast(pl.Int64).cast(TS).alias(c) for c in time_columns]
    )


def _summary_row(
    frame: fitdecode.FitDataMessage, clock: _Clock, index: int, index_name: str, schema: dict
) -> dict[str, Any]:
    """Shared fields of ``lap`` and ``session`` messages (the device's own totals)."""
    start = clock(_value(frame, "start_time"))
    end = clock(_value(frame, "timestamp"))
    elapsed = _num(_value(frame, "total_elapsed_time"))
    row = {
        index_name: index,
        "start_time_utc": start,
        "end_time_utc": end,
        "total_elapsed_time_s": elapsed,
        "total_timer_time_s": _num(_value(frame, "total_timer_time")),
        "total_distance_m": _num(_value(frame, "total_distance")),
        "avg_hr_bpm": _num(_value(frame, "avg_heart_rate")),
        "max_hr_bpm": _num(_value(frame, "max_heart_rate")),
        "avg_speed_mps": _num(_value(frame, "enhanced_avg_speed", "avg_speed")),
        "sport": _text(_value(frame, "sport")),
        "sub_sport": _text(_value(frame, "sub_sport")),
        "total_ascent_m": _num(_value(frame, "total_ascent")),
        "total_descent_m": _num(_value(frame, "total_descent")),
        "first_lap_index": _value(frame, "first_lap_index"),
        "num_laps": _value(frame, "num_laps"),
        "lap_trigger": _text(_value(frame, "lap_trigger")),
        "intensity": _text(_value(frame, "intensity")),
        "wkt_step_index": _value(frame, "wkt_step_index"),
    }
    for key in ("first_lap_index", "num_laps", "wkt_step_index"):
        if not isinstance(row[key], int):
            row[key] = None
    return {k: row.get(k) for k in schema}


from pipelines.fit.fast_records import decode_fit_fast  # noqa: E402  (imports this module)
