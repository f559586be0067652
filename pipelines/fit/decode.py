"""Decode a FIT file with fitdecode into typed frames: file, sessions, laps, records, events.

Recovery first: a file that fails its CRC or ends early keeps every message that decoded and
says so in ``integrity``; only a file with nothing usable raises ``FitUnusable``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import fitdecode
import polars as pl

SEMICIRCLE_TO_DEG = 180.0 / 2**31
DECODER_ENV = "WEARHOUSE_FIT_DECODER"  # "fast" (default) or "fitdecode"

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
    """Nothing usable could be read from the file."""


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


def _open(raw: bytes) -> bytes:
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


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
    path is tested against fitdecode as its oracle, and falls back to it on any doubt)."""
    if os.environ.get(DECODER_ENV, "fast") == "fitdecode":
        return decode_fit_fitdecode(raw)
    return decode_fit_fast(raw, decode_fit_fitdecode)


def decode_fit_fitdecode(raw: bytes) -> FitDecoded:
    """Decode every valid message with fitdecode; classify what went wrong with the rest."""
    if not raw:
        raise FitUnusable("empty file (0 bytes)")
    try:
        data = _open(raw)
    except (OSError, EOFError) as exc:
        raise FitUnusable(f"gzip could not be read: {exc}") from exc
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
    integrity, problem = "ok", None
    chain = -1  # index of the current FIT file of a chained file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fitdecode.FitReader(
                io.BytesIO(data),
                check_crc=fitdecode.CrcCheck.RAISE,
                error_handling=fitdecode.ErrorHandling.WARN,
            ) as reader:
                for frame in reader:
                    if isinstance(frame, fitdecode.FitHeader):
                        chain += 1
                        continue
                    if not isinstance(frame, fitdecode.FitDataMessage):
                        continue
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
                                "elevation_m": _num(_value(frame, "enhanced_altitude", "altitude")),
                                "lat_deg": _degrees(_value(frame, "position_lat")),
                                "lon_deg": _degrees(_value(frame, "position_long")),
                                "temperature_c": _num(_value(frame, "temperature")),
                                "chain_index": chain,
                            }
                        )
                        leftovers = _leftovers(frame)
                        if leftovers:
                            record_fields.append({"record_index": len(records) - 1, **leftovers})
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
                        for rr in frame.get_value("time", fallback=None) or ():
                            if isinstance(rr, (int, float)):
                                hrv.append({"hrv_index": len(hrv), "rr_s": float(rr)})
                    elif name == "activity":
                        local = _value(frame, "local_timestamp")
                        activity_times.append(
                            (
                                clock(_value(frame, "timestamp")),
                                local.timestamp() if isinstance(local, datetime) else None,
                            )
                        )
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
        if isinstance(data.field_def, fitdecode.types.DevFieldDefinition):
            developer[data.name] = _plain(data.value)
        elif not data.name.startswith("unknown_"):
            extra[data.name] = _plain(data.value)
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
