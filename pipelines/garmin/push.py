"""Push bodies: ``{"<summaryType>": [item, …]}`` into bronze rows, one table per shape.

Bad items are refused one by one (with the reason) so the good items of the same body land;
``PayloadError`` refuses a whole body. Nothing else is raised, whatever the bytes.

Bounds, checked before the work they limit:

* body: at most ``max_body_bytes`` (``MAX_BODY_BYTES``, 256 MiB by default: above the
  receiver's ``WEARHOUSE_MAX_BODY_MB``, so whatever it stored parses) — else PayloadError;
* nesting: at most ``fields.MAX_DEPTH`` (64) levels — else PayloadError;
* items: at most ``MAX_ITEMS`` (200,000) per body — else PayloadError;
* a repeated key: in the envelope, PayloadError (a parser keeps only the last list, so the
  first would vanish); in an item (its own keys, nested objects, samples), the item is refused;
* per activity: at most ``MAX_SAMPLES`` (500,000; a day at 1 Hz is 86,400) and ``MAX_LAPS``
  (10,000) — else the item is refused;
* per item: at most ``MAX_RAW_JSON_BYTES`` (1 MiB) of JSON kept verbatim (``raw_json``: what is
  not modelled; the exploded samples, laps and maps do not count), and per sample as much
  ``extra_json`` — else the item is refused; ``userId``/``summaryId`` at most
  ``fields.MAX_ID_CHARS`` (256) characters;
* instants: 1989-01-01 … 2100-01-01 UTC (``fields.MIN_EPOCH_S`` … ``MAX_EPOCH_S``) for item
  starts, samples, laps, sleep levels and time-offset maps: one instant outside refuses its
  item (a corrupt clock makes the whole item suspect, and a refused item is kept in landing
  and quarantined with its reason rather than landing in part);
* text: a lone surrogate (``"\\ud800"``) in userId or summaryId refuses the item; in any other
  string it becomes U+FFFD; in a summary type key, that key's items are refused;
* a summary type with time-offset maps needs a ``summaryId`` when it carries any (silver
  attaches series by it): without one the item is refused, never kept without its series.

Memory: items are decoded one at a time and their rows kept columnar; ``lazy_tables()``
hands each table over in parts of ``PART_ROWS`` rows, so parsing and writing a body peaks at a
small multiple of its size, while ``tables()`` holds every exploded row (the time series of a
dailies body are about ten times its JSON). A body only the lenient decoder reads (NaN,
Infinity, a lone surrogate) is decoded whole by ``json.loads``: about 5× its size.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import polars as pl
from polars.io.plugins import register_io_source

from pipelines.garmin.fields import (
    MAX_DEPTH,
    FieldError,
    PayloadError,
    Undecoded,
    checked_epoch_s,
    checked_identity,
    coerce,
    decode_json,
    decoded,
    epoch_s,
    is_text,
    local_from_epoch,
    nesting_depth,
    polars_dtype,
    text,
    utc_from_epoch,
    utc_offset_s,
)
from pipelines.garmin.summaries import (
    SPECS,
    SUMMARY_TABLES,
    SeriesRows,
    sleep_levels_frame,
    summary_row,
)

MAX_BODY_BYTES = 256 * 2**20
MAX_ITEMS = 200_000
MAX_SAMPLES = 500_000
MAX_LAPS = 10_000
MAX_RAW_JSON_BYTES = 2**20


# (Garmin key, column, kind) for an activity summary, as in `activities` items and the
# `summary` of `activityDetails` items. Units are in the column names.
ACTIVITY_FIELDS: list[tuple[str, str, str]] = [
    ("activityName", "activity_name", "str"),
    ("activityType", "activity_type", "str"),
    ("startTimeInSeconds", "start_epoch_s", "int"),
    ("durationInSeconds", "duration_s", "int"),
    ("distanceInMeters", "distance_m", "float"),
    ("averageHeartRateInBeatsPerMinute", "avg_hr_bpm", "int"),
    ("maxHeartRateInBeatsPerMinute", "max_hr_bpm", "int"),
    ("averageSpeedInMetersPerSecond", "avg_speed_mps", "float"),
    ("maxSpeedInMetersPerSecond", "max_speed_mps", "float"),
    ("averageRunCadenceInStepsPerMinute", "avg_run_cadence_spm", "float"),
    ("averageBikeCadenceInRoundsPerMinute", "avg_bike_cadence_rpm", "float"),
    ("averagePowerInWatts", "avg_power_w", "float"),
    ("activeKilocalories", "active_kcal", "float"),
    ("steps", "steps", "int"),
    ("totalElevationGainInMeters", "elevation_gain_m", "float"),
    ("totalElevationLossInMeters", "elevation_loss_m", "float"),
    ("startingLatitudeInDegree", "start_lat_deg", "float"),
    ("startingLongitudeInDegree", "start_lon_deg", "float"),
    ("deviceName", "device_name", "str"),
    ("manual", "manual", "bool"),
    ("isWebUpload", "is_web_upload", "bool"),
    ("isParent", "is_parent", "bool"),
    ("parentSummaryId", "parent_summary_id", "str"),
]

# Sample keys of `activityDetails`; a value holds until the next sample.
SAMPLE_FIELDS: list[tuple[str, str, str]] = [
    ("startTimeInSeconds", "start_epoch_s", "int"),
    ("totalDistanceInMeters", "distance_m", "float"),
    ("speedMetersPerSecond", "speed_mps", "float"),
    ("heartRate", "hr_bpm", "float"),
    ("timerDurationInSeconds", "timer_s", "float"),
    ("clockDurationInSeconds", "clock_s", "float"),
    ("movingDurationInSeconds", "moving_s", "float"),
    ("latitudeInDegree", "lat_deg", "float"),
    ("longitudeInDegree", "lon_deg", "float"),
    ("elevationInMeters", "elevation_m", "float"),
    ("stepsPerMinute", "cadence_spm", "float"),
    ("bikeCadenceInRPM", "cadence_rpm", "float"),
    ("swimCadenceInStrokesPerMinute", "swim_cadence_spm", "float"),
    ("wheelChairCadenceInPushesPerMinute", "wheelchair_cadence_ppm", "float"),
    ("powerInWatts", "power_w", "float"),
    ("airTemperatureCelcius", "air_temperature_c", "float"),  # sic: Garmin's spelling
]

ITEM_KEYS: dict[str, pl.DataType] = {
    "summary_type": pl.String(),
    "item_index": pl.Int64(),
    "user_id": pl.String(),
    "summary_id": pl.String(),
}

_TIME_COLUMNS: dict[str, pl.DataType] = {
    "start_time_utc": pl.Datetime("us", "UTC"),
    "start_time_local": pl.Datetime("us"),
    "utc_offset_s": pl.Int64(),
}

ACTIVITY_SCHEMA: dict[str, pl.DataType] = {
    **ITEM_KEYS,
    "activity_id": pl.Int64(),
    **_TIME_COLUMNS,
    **{column: polars_dtype(kind) for _, column, kind in ACTIVITY_FIELDS},
    "raw_json": pl.String(),
}

DETAIL_SCHEMA: dict[str, pl.DataType] = {
    **ACTIVITY_SCHEMA,
    "n_samples": pl.Int64(),
    "n_laps": pl.Int64(),
}

SAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "summary_id": pl.String(),
    "user_id": pl.String(),
    "activity_id": pl.Int64(),
    "sample_index": pl.Int64(),
    "time_utc": pl.Datetime("us", "UTC"),
    **{column: polars_dtype(kind) for _, column, kind in SAMPLE_FIELDS},
    "extra_json": pl.String(),  # sample keys not modelled yet, kept verbatim
}

LAP_SCHEMA: dict[str, pl.DataType] = {
    "summary_id": pl.String(),
    "user_id": pl.String(),
    "activity_id": pl.Int64(),
    "lap_index": pl.Int64(),
    "start_epoch_s": pl.Int64(),
    "start_time_utc": pl.Datetime("us", "UTC"),
}

OTHER_SCHEMA: dict[str, pl.DataType] = {
    **ITEM_KEYS,
    **_TIME_COLUMNS,
    "raw_json": pl.String(),
}

# Bronze table per push key; keys without a spec land in `garmin_other_summaries`.
BRONZE_TABLES: dict[str, dict[str, pl.DataType]] = {
    "garmin_activities": ACTIVITY_SCHEMA,
    "garmin_activity_details": DETAIL_SCHEMA,
    "garmin_activity_samples": SAMPLE_SCHEMA,
    "garmin_activity_laps": LAP_SCHEMA,
    **SUMMARY_TABLES,
    "garmin_other_summaries": OTHER_SCHEMA,
}

# Time-offset maps and sleep levels stored as rows of garmin_timeseries / garmin_sleep_levels.
EXPLODED_KEYS = frozenset(
    {key for spec in SPECS.values() for key, _ in spec.series} | {"sleepLevelsMap"}
)

# Known keys without a bronze table of their own (activityFiles is ping-only).
ACTIVITY_TYPES = ("activities", "manuallyUpdatedActivities", "activityDetails", "activityFiles")


# Rows of a table kept as Python dicts before they become one frame: a dict row costs several
# times its columnar form, so a body of many small items never holds them all as dicts.
ROWS_PER_FRAME = 4_096
# Rows per frame of ``ParsedPush.parts``: what a streaming writer holds at once.
PART_ROWS = 500_000


@dataclass
class ParsedPush:
    """Rows per bronze table: dict rows (one per item, turned into a frame every
    ROWS_PER_FRAME) and frames (samples, series, …)."""

    rows: dict[str, list[dict]] = field(default_factory=dict)
    frames: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    refusals: list[tuple[int | None, str]] = field(default_factory=list)
    item_counts: dict[str, int] = field(default_factory=dict)
    unknown_types: set[str] = field(default_factory=set)
    dropped_erased: int = 0  # items of erased users dated before their deregistration
    series: SeriesRows = field(default_factory=SeriesRows)  # garmin_timeseries, as arrays

    def add_row(self, table: str, row: dict) -> None:
        rows = self.rows.setdefault(table, [])
        rows.append(row)
        if len(rows) >= ROWS_PER_FRAME:
            self.add(table, pl.DataFrame(rows, schema=BRONZE_TABLES[table]))
            rows.clear()

    def add(self, table: str, frame: pl.DataFrame) -> None:
        if frame.height:
            self.frames.setdefault(table, []).append(frame)

    def parts(self, table: str, max_rows: int = PART_ROWS) -> Iterator[pl.DataFrame]:
        """``table``'s rows as frames with its exact schema, in order, built one at a time
        (the exploded time series above all: about ten times the JSON it comes from)."""
        yield from self.frames.get(table, [])
        if table == "garmin_timeseries":
            yield from self.series.frames(max_rows)
        if self.rows.get(table):
            yield pl.DataFrame(self.rows[table], schema=BRONZE_TABLES[table])

    def row_counts(self) -> dict[str, int]:
        """Rows per bronze table (every table), without building any frame."""
        counts = {}
        for table in BRONZE_TABLES:
            n = sum(f.height for f in self.frames.get(table, [])) + len(self.rows.get(table, []))
            counts[table] = n + (self.series.n_rows() if table == "garmin_timeseries" else 0)
        return counts

    def tables(self) -> dict[str, pl.DataFrame]:
        """Every bronze table, empty ones included, with its exact schema."""
        out = {}
        for table in BRONZE_TABLES:
            parts = list(self.parts(table))
            # No rechunk: a copy of every table would double its memory for nothing.
            out[table] = (
                pl.concat(parts, how="vertical", rechunk=False) if parts else _empty_table(table)
            )
        return out

    def lazy_tables(self, max_rows: int = PART_ROWS) -> dict[str, pl.LazyFrame]:
        """Every bronze table as a LazyFrame streaming ``parts``: ``sink_parquet`` writes a
        body's tables holding one part at a time, not every exploded row."""
        return {
            table: register_io_source(
                functools.partial(_stream, self, table, max_rows),
                schema=BRONZE_TABLES[table],
                is_pure=True,
            )
            for table in BRONZE_TABLES
        }


def _stream(
    parsed: ParsedPush,
    table: str,
    max_rows: int,
    with_columns: list[str] | None,
    predicate: pl.Expr | None,
    n_rows: int | None,
    batch_size: int | None,
) -> Iterator[pl.DataFrame]:
    """``parsed.parts(table)`` as a Polars IO source: projection, filter and row limit
    applied as the engine asks."""
    left = n_rows
    for part in parsed.parts(table, min(max_rows, batch_size or max_rows)):
        if predicate is not None:
            part = part.filter(predicate)
        if with_columns is not None:
            part = part.select(with_columns)
        if left is not None:
            part = part.head(left)
            left -= part.height
        yield part
        if left is not None and left <= 0:
            return


_EMPTY_TABLES: dict[str, pl.DataFrame] = {}


def _empty_table(table: str) -> pl.DataFrame:
    """A new empty frame with the table's schema. Most bronze tables are empty for any one
    body, and building a frame from a schema costs far more than copying an empty one."""
    if table not in _EMPTY_TABLES:
        _EMPTY_TABLES[table] = pl.DataFrame(schema=BRONZE_TABLES[table])
    return _EMPTY_TABLES[table].clear()


class _RepeatedKeys(dict):
    """An object decoded by ``json.loads`` in which ``repeated`` occurred more than once."""

    repeated: str = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
    marked = _RepeatedKeys(obj)
    marked.repeated = repeated
    return marked


def _first_repeat(value: Any) -> str | None:
    """A key repeated in some object of ``value`` (decoded by load_envelope), or None."""
    if isinstance(value, _RepeatedKeys):
        return value.repeated
    children = value.values() if isinstance(value, dict) else value
    if isinstance(value, dict | list):
        for child in children:
            if isinstance(child, dict | list) and (key := _first_repeat(child)) is not None:
                return key
    return None


def load_envelope(raw: bytes) -> dict[str, list[Any]]:
    """Decode a push body; raise PayloadError saying what is wrong with it.

    Objects in which a key repeats come back as ``_RepeatedKeys`` (the envelope itself
    raises PayloadError)."""
    if not raw.strip():
        raise PayloadError("empty body")
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and nesting_depth(raw) > MAX_DEPTH:
        raise PayloadError(f"nesting deeper than {MAX_DEPTH}")
    try:
        body = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_pairs)
    except UnicodeDecodeError as exc:
        raise PayloadError(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:  # malformed text the depth scan could not read
        raise PayloadError(f"nesting deeper than {MAX_DEPTH}") from exc
    except ValueError as exc:  # an integer beyond the interpreter's digit limit
        raise PayloadError(f"malformed JSON: {text(str(exc))}") from exc
    if not isinstance(body, dict):
        raise PayloadError(
            f"expected an object keyed by summary type, got a JSON {type(body).__name__}"
        )
    if not body:
        raise PayloadError("empty envelope: no summary type key")
    if isinstance(body, _RepeatedKeys):
        raise PayloadError(f"duplicate key {text(body.repeated)!r} in the envelope")
    bad = [key for key, value in body.items() if not isinstance(value, list)]
    if bad:
        raise PayloadError(
            f"not a push envelope: value of {text(bad[0])!r} is a "
            f"{type(body[bad[0]]).__name__}, expected a list of summaries"
        )
    _check_item_count(sum(map(len, body.values())))
    return body


def _check_item_count(n: int) -> None:
    if n > MAX_ITEMS:
        raise PayloadError(f"{n:,} items: more than {MAX_ITEMS:,} in one body")


def _item_keys(summary_type: str, index: int, item: dict[str, Any]) -> dict[str, Any]:
    user_id = checked_identity(item, "userId")
    if not user_id:
        raise FieldError("missing userId")
    return {
        "summary_type": summary_type,
        "item_index": index,
        "user_id": user_id,
        "summary_id": checked_identity(item, "summaryId"),
    }


def _time_columns(item: dict[str, Any]) -> dict[str, Any]:
    start = epoch_s(item, "startTimeInSeconds")
    offset = utc_offset_s(item)
    return {
        "start_time_utc": utc_from_epoch(start),
        "start_time_local": local_from_epoch(start, offset),
        "utc_offset_s": offset,
    }


def activity_row(summary_type: str, index: int, item: dict, summary: dict) -> dict[str, Any]:
    """One activity summary row; ``summary`` is the item itself or its nested ``summary``."""
    row = _item_keys(summary_type, index, item)
    activity_id = coerce(item, "activityId", "int")
    if activity_id is None:
        activity_id = coerce(summary, "activityId", "int")
    row["activity_id"] = activity_id
    row.update(_time_columns(summary))
    for key, column, kind in ACTIVITY_FIELDS:
        row[column] = coerce(summary, key, kind)
    return row


def sample_frame(samples: list[Any], keys: dict[str, Any]) -> pl.DataFrame:
    """All samples of one activityDetails item as typed columns, in whole-column operations."""
    if not (set(map(type, samples)) <= {dict} or all(isinstance(s, dict) for s in samples)):
        raise FieldError("samples must be a list of objects")
    if not samples:
        return pl.DataFrame(schema=SAMPLE_SCHEMA)
    if len(samples) > MAX_SAMPLES:
        raise FieldError(f"{len(samples):,} samples: more than {MAX_SAMPLES:,}")
    frame = _sample_frame_numeric(samples, keys)
    return _sample_frame_general(samples, keys) if frame is None else frame


_SAMPLE_KEYS = frozenset(key for key, _, _ in SAMPLE_FIELDS)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _fits_int64(value: Any) -> bool:
    return value is None or _INT64_MIN <= value <= _INT64_MAX


def _numeric_column(key: str, values: list[Any]) -> pl.Series | None:
    """``values`` as the Series ``pl.DataFrame(samples)`` would infer for that key (Int64 when
    all are ints, Float64 when any is a float, Null when all are null); None for anything
    else (strings, booleans, objects, ints beyond Int64), which the general path handles."""
    types = set(map(type, values))
    types.discard(type(None))
    try:
        if not types:
            return pl.Series(key, values)
        if types == {int}:
            return pl.Series(key, values, dtype=pl.Int64())  # raises beyond Int64
        if types == {float}:
            return pl.Series(key, values, dtype=pl.Float64())
        if types == {int, float} and all(_fits_int64(v) for v in values if type(v) is int):
            return pl.Series(key, values, dtype=pl.Float64())
    except (TypeError, OverflowError, pl.exceptions.PolarsError):
        return None
    return None


def _sample_frame_numeric(samples: list[dict], keys: dict[str, Any]) -> pl.DataFrame | None:
    """The common case, built column by column without inferring a schema over every sample
    and without lazy queries (each costs a thread-pool round trip per item): only modelled
    keys, numbers or nulls. Returns None for anything else, so the general path decides
    (and words any refusal) exactly as before; the frame it returns is the one the general
    path would build."""
    if not _fits_int64(keys["activity_id"]):
        return None
    present = set().union(*samples)
    if not present or not present <= _SAMPLE_KEYS:
        return None  # no keys at all, or unmodelled ones (for extra_json): the general path
    n = len(samples)
    sources = {}
    for key, _, _ in SAMPLE_FIELDS:
        if key in present:
            values = list(map(dict.get, samples, itertools.repeat(key)))
            sources[key] = _numeric_column(key, values)
            if sources[key] is None:
                return None
    # Cast only once every column is known to be numeric: a failing cast (NaN, ±inf or
    # beyond Int64 where an integer is due) then refuses as the general path's would.
    columns = {}
    for key, column, kind in SAMPLE_FIELDS:
        if key not in sources:
            columns[column] = pl.Series(column, [None] * n, dtype=polars_dtype(kind))
            continue
        try:
            columns[column] = sources[key].cast(polars_dtype(kind), strict=True).alias(column)
        except pl.exceptions.PolarsError as exc:
            raise FieldError(f"sample field {key!r}: not {kind}: {exc}") from exc
    if columns["start_epoch_s"].null_count():
        raise FieldError("a sample has no startTimeInSeconds")
    return _sample_frame_of(columns, keys, n)


def _check_sample_times(epoch_s: pl.Series) -> None:
    """FieldError when a sample's start is outside the plausible instants."""
    lo, hi = epoch_s.min(), epoch_s.max()
    for value in (lo, hi):
        checked_epoch_s(value, "samples[].startTimeInSeconds")


def _sample_frame_of(columns: dict[str, pl.Series], keys: dict[str, Any], n: int) -> pl.DataFrame:
    """The samples frame from its typed SAMPLE_FIELDS columns (start times all present)."""
    epoch_s = columns["start_epoch_s"]
    _check_sample_times(epoch_s)
    return pl.DataFrame(
        {
            "summary_id": _constant("summary_id", keys["summary_id"], pl.String(), n),
            "user_id": _constant("user_id", keys["user_id"], pl.String(), n),
            "activity_id": _constant("activity_id", keys["activity_id"], pl.Int64(), n),
            "sample_index": pl.Series("sample_index", np.arange(n, dtype=np.int64)),
            # = pl.from_epoch(s, "s").dt.replace_time_zone("UTC"): µs since the epoch
            "time_utc": (epoch_s * 1_000_000).cast(pl.Datetime("us", "UTC")).alias("time_utc"),
            **columns,
            "extra_json": pl.Series("extra_json", [None] * n, dtype=pl.String()),
        }  # in SAMPLE_SCHEMA's order
    )


# A sample as devices send it: modelled keys only, numbers or null. msgspec refuses anything
# else (unknown keys, strings, booleans, objects, …) and keeps the last of a repeated key, as
# json.loads does; ints of any size are kept as ints.
_Sample = msgspec.defstruct(
    "_Sample",
    [(key, int | float | None, None) for key, _, _ in SAMPLE_FIELDS],
    forbid_unknown_fields=True,
    gc=False,
)
_SAMPLES_DECODER = msgspec.json.Decoder(list[_Sample])
_SAMPLE_GETTERS = [
    (operator.attrgetter(key), key, column, polars_dtype(kind))
    for key, column, kind in SAMPLE_FIELDS
]


def _typed_sample_frame(raw: msgspec.Raw, keys: dict[str, Any]) -> pl.DataFrame | None:
    """The samples frame of a samples array decoded straight into ``_Sample`` objects (no
    dict per sample), for the common case only: the frame _sample_frame_numeric builds, or
    None whenever anything is off (the decoded path then decides and words it as before)."""
    if not _fits_int64(keys["activity_id"]):
        return None
    try:
        samples = _SAMPLES_DECODER.decode(raw)
    except msgspec.ValidationError:
        return None
    n = len(samples)
    columns = {}
    present = 0  # keys with a non-null value, over all samples
    try:
        for get, key, column, dtype in _SAMPLE_GETTERS:
            values = list(map(get, samples))
            nulls = values.count(None)
            present += n - nulls
            if nulls == n:  # absent (or null) in every sample
                columns[column] = pl.Series(column, values, dtype=dtype)
                continue
            source = _numeric_column(key, values)
            if source is None:
                return None
            columns[column] = source.cast(dtype, strict=True).alias(column)
    except pl.exceptions.PolarsError:
        return None
    if not n or columns["start_epoch_s"].null_count() or _repeats_a_key(raw, present):
        return None
    return _sample_frame_of(columns, keys, n)


def _repeats_a_key(raw: msgspec.Raw, present: int) -> bool:
    """Whether a sample of ``raw`` (decoded as ``_Sample``s: modelled keys, numbers and nulls
    only, so every colon ends a key) repeats a key: more colons than keys kept."""
    colons = int(np.count_nonzero(np.frombuffer(raw, np.uint8) == 0x3A))
    return colons != present and colons != present + bytes(raw).count(b"null")


def _constant(name: str, value: Any, dtype: pl.DataType, n: int) -> pl.Series:
    return pl.Series(name, [value], dtype=dtype).new_from_index(0, n)


def _sample_frame_general(samples: list[dict], keys: dict[str, Any]) -> pl.DataFrame:
    """Any non-empty list of sample objects: Polars infers each key's type over all samples."""
    try:
        raw = pl.DataFrame(samples, infer_schema_length=None)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as exc:
        raise FieldError(f"samples have inconsistent types: {exc}") from exc
    known = {key for key, _, _ in SAMPLE_FIELDS}
    extra = [c for c in raw.columns if c not in known]
    columns = []
    for key, column, kind in SAMPLE_FIELDS:
        dtype = polars_dtype(kind)
        if key in raw.columns:
            source = raw.get_column(key)
            if source.dtype == pl.String() or source.dtype == pl.Boolean():
                raise FieldError(f"sample field {key!r}: expected {kind}, got {source.dtype}")
            try:
                columns.append(source.cast(dtype, strict=True).alias(column))
            except pl.exceptions.PolarsError as exc:  # e.g. beyond Int64, 1e308 as an int
                raise FieldError(f"sample field {key!r}: not {kind}: {exc}") from exc
        else:
            columns.append(pl.Series(column, [None] * raw.height, dtype=dtype))
    frame = pl.DataFrame(columns)
    if frame.get_column("start_epoch_s").null_count():
        raise FieldError("a sample has no startTimeInSeconds")
    _check_sample_times(frame.get_column("start_epoch_s"))
    extra_json = (
        raw.select(pl.struct(extra).struct.json_encode()).to_series()
        if extra
        else pl.Series([None] * raw.height, dtype=pl.String())
    )
    if extra and (extra_json.str.len_bytes().max() or 0) > MAX_RAW_JSON_BYTES:
        raise FieldError(f"a sample's unmodelled keys exceed {MAX_RAW_JSON_BYTES:,} bytes")
    return frame.with_columns(
        pl.lit(keys["summary_id"], pl.String()).alias("summary_id"),
        pl.lit(keys["user_id"], pl.String()).alias("user_id"),
        pl.lit(keys["activity_id"], pl.Int64()).alias("activity_id"),
        pl.int_range(pl.len(), dtype=pl.Int64()).alias("sample_index"),
        pl.from_epoch("start_epoch_s", time_unit="s")
        .dt.replace_time_zone("UTC")
        .cast(pl.Datetime("us", "UTC"))
        .alias("time_utc"),
        extra_json.alias("extra_json"),
    ).select(list(SAMPLE_SCHEMA))


def lap_frame(laps: list[Any], keys: dict[str, Any]) -> pl.DataFrame:
    if len(laps) > MAX_LAPS:
        raise FieldError(f"{len(laps):,} laps: more than {MAX_LAPS:,}")
    starts = []
    for lap in laps:
        if not isinstance(lap, dict):
            raise FieldError("laps must be a list of objects")
        start = epoch_s(lap, "startTimeInSeconds")
        if start is None:
            raise FieldError("a lap has no startTimeInSeconds")
        starts.append(start)
    if not starts:
        return _empty_table("garmin_activity_laps")
    n = len(starts)
    seconds = pl.Series("start_epoch_s", starts, dtype=pl.Int64())
    return pl.DataFrame(
        {
            "summary_id": _constant("summary_id", keys["summary_id"], pl.String(), n),
            "user_id": _constant("user_id", keys["user_id"], pl.String(), n),
            "activity_id": _constant("activity_id", keys["activity_id"], pl.Int64(), n),
            "lap_index": pl.Series("lap_index", np.arange(n, dtype=np.int64)),
            "start_epoch_s": seconds,
            # = datetime.fromtimestamp(s, UTC): µs since the epoch
            "start_time_utc": (seconds * 1_000_000).cast(pl.Datetime("us", "UTC")),
        }  # in LAP_SCHEMA's order
    )


def _without(item: dict[str, Any], *keys: str) -> str:
    """``item`` as compact JSON but for ``keys`` (exploded into their own tables)."""
    kept = {k: decoded(v) for k, v in item.items() if k not in keys}
    raw_json = json.dumps(kept, separators=(",", ":"))
    if len(raw_json) > MAX_RAW_JSON_BYTES:  # ASCII: json.dumps escapes the rest
        raise FieldError(f"more than {MAX_RAW_JSON_BYTES:,} bytes of unmodelled JSON")
    return raw_json


def _parse_item(summary_type: str, index: int, item: Any, out: ParsedPush) -> None:
    if not isinstance(item, dict):
        raise FieldError(f"item is a {type(item).__name__}, expected an object")
    if summary_type in ("activities", "manuallyUpdatedActivities"):
        row = activity_row(summary_type, index, item, item)
        row["raw_json"] = _without(item)
        out.add_row("garmin_activities", row)
    elif summary_type == "activityDetails" and "callbackURL" not in item:
        summary = item.get("summary") or {}
        if not isinstance(summary, dict):
            raise FieldError("summary is not an object")
        samples = item.get("samples")
        if isinstance(samples, Undecoded):
            # Every sample is an object: more opening braces than the bound, more samples.
            objects = np.count_nonzero(np.frombuffer(samples.raw, np.uint8) == 0x7B)
            if objects > MAX_SAMPLES:
                raise FieldError(f"samples: {objects:,} objects, more than {MAX_SAMPLES:,}")
        typed = isinstance(samples, Undecoded) and memoryview(samples.raw)[:2] == b"[{"
        if not typed:  # decoded now unless a non-empty list of objects
            samples = decoded(samples) or []
        laps = item.get("laps") or []
        if not isinstance(samples, list | Undecoded) or not isinstance(laps, list):
            raise FieldError("samples and laps must be lists")
        row = activity_row(summary_type, index, item, summary)
        keys = {k: row[k] for k in ("summary_id", "user_id", "activity_id")}
        samples_df = _typed_sample_frame(samples.raw, keys) if typed else None
        if samples_df is None:
            samples = decoded(samples)
            samples_df = sample_frame(samples, keys)
        laps_df = lap_frame(laps, keys)
        n_samples = len(samples) if isinstance(samples, list) else samples_df.height
        row.update(
            raw_json=_without(item, "samples", "laps"), n_samples=n_samples, n_laps=len(laps)
        )
        out.add_row("garmin_activity_details", row)
        out.add("garmin_activity_samples", samples_df)
        out.add("garmin_activity_laps", laps_df)
    elif summary_type in SPECS and "callbackURL" not in item:
        spec = SPECS[summary_type]
        keys = _item_keys(summary_type, index, item)
        if not keys["summary_id"] and any(item.get(k) for k in EXPLODED_KEYS):
            # Silver attaches series and sleep levels to their summary by summaryId.
            raise FieldError("missing or empty summaryId: its time series would be lost")
        row = summary_row(spec, keys, item)
        series = SeriesRows()
        series.add_item(spec, keys, item)  # parsed before anything is added: refusals add nothing
        levels = sleep_levels_frame(keys, item) if summary_type == "sleeps" else None
        # Maps already exploded into their own tables are left out, as samples and laps are
        # for activityDetails: raw_json keeps what is not modelled.
        row["raw_json"] = _without(item, *EXPLODED_KEYS)
        out.add_row(spec.table, row)
        out.series.merge(series)
        if levels is not None:
            out.add("garmin_sleep_levels", levels)
    else:
        # Unknown summary types (and ping items pushed by mistake) are kept, never dropped.
        if summary_type not in SPECS and summary_type not in ACTIVITY_TYPES:
            out.unknown_types.add(summary_type)
        row = _item_keys(summary_type, index, item)
        row.update(_time_columns(item))
        row["raw_json"] = _without(item)
        out.add_row("garmin_other_summaries", row)


_TIME_KEYS = (
    "startTimeInSeconds",
    "measurementTimeInSeconds",
    "changeTimeInSeconds",
    "lastUpdatedTimeInSeconds",
)


def item_time(item: dict[str, Any]) -> float | None:
    """The instant an item is dated by, wherever its type keeps it."""
    for source in (item, item.get("summary")):
        if isinstance(source, dict):
            for key in _TIME_KEYS:
                value = source.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    try:
                        return float(value)
                    except OverflowError:  # an int beyond floats: later than anything
                        return float("inf") if value > 0 else float("-inf")
    return None


def is_erased_item(item: Any, erased: dict[str, float]) -> bool:
    """Item of a deregistered user dated before the deregistration (or undated)."""
    if not erased or not isinstance(item, dict) or not isinstance(item.get("userId"), str):
        return False
    # A lone surrogate cannot be anyone's id: its hash matches nobody, and parsing refuses it.
    user_id = item["userId"].encode("utf-8", "surrogatepass")
    deregistered = erased.get(hashlib.sha256(user_id).hexdigest())
    if deregistered is None:
        return False
    when = item_time(item)
    return when is None or when < deregistered


def parse_push(
    raw: bytes, erased: dict[str, float] | None = None, max_body_bytes: int = MAX_BODY_BYTES
) -> ParsedPush:
    """Parse one push body. Raises PayloadError only when nothing in it is usable (or it is
    beyond a bound: see the module docstring); never anything else.

    ``erased`` maps sha256(user_id) → deregistration epoch: such users' earlier-dated items
    are dropped and counted, never parsed.

    Items are decoded and parsed one at a time, so a body's Python objects (about 2.5× its
    size) never all exist at once; a body that is not a plain envelope, or that fails in any
    way, is parsed again whole, which decides exactly as a whole-body parse always did."""
    if len(raw) > max_body_bytes:
        raise PayloadError(f"body of {len(raw):,} bytes: more than {max_body_bytes:,} bytes")
    try:
        return _parse_item_by_item(raw, erased)
    except PayloadError:
        raise
    except RecursionError as exc:  # msgspec's own bound, far beyond MAX_DEPTH
        raise PayloadError(f"nesting deeper than {MAX_DEPTH}") from exc
    except Exception:  # the whole-body parse then raises (or not) what applies
        return _parse_whole(raw, erased)


def _add_item(
    out: ParsedPush, summary_type: str, index: int, item: Any, erased: dict | None
) -> None:
    """Parse one item (``msgspec.Raw`` when the body was split, else decoded) into ``out``,
    or refuse it with the reason."""
    try:
        if isinstance(item, msgspec.Raw):
            item = _decode_item(summary_type, item)
        elif (key := _first_repeat(item)) is not None:
            raise FieldError(f"duplicate key {text(key)!r}")
        if erased and is_erased_item(item, erased):
            out.dropped_erased += 1
            return
        _parse_item(summary_type, index, item, out)
    except FieldError as exc:
        out.refusals.append((index, f"{summary_type}[{index}]: {exc}"))


def _parse_whole(raw: bytes, erased: dict | None) -> ParsedPush:
    """``json.loads`` the body, then parse its items."""
    body = load_envelope(raw)
    out = ParsedPush()
    index = 0
    for summary_type, items in body.items():
        out.item_counts[text(summary_type)] = len(items)
        for item in items:
            if is_text(summary_type):
                _add_item(out, summary_type, index, item, erased)
            else:  # no table can hold such a type name
                reason = "summary type key is not valid Unicode (a lone surrogate)"
                out.refusals.append((index, f"{text(summary_type)}[{index}]: {reason}"))
            index += 1
    return out


class _NotPlainEnvelope(Exception):
    """Not ``{"<type>": [item, …], …}``: left to the whole-body parse."""


# msgspec decodes exactly what json.loads decodes, to the same values (arbitrary-size ints,
# correctly rounded floats, last value of a repeated key), and refuses the rest (NaN,
# Infinity, lone surrogates, …), which the whole-body parse then decides as before.
# Repeated keys are found apart (``_keys_outside``, ``fields.check_unique_keys``).
_ENVELOPE = msgspec.json.Decoder(dict[str, list[msgspec.Raw]])
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])  # an item's keys, values undecoded
# Values left undecoded until parsed: the time-offset maps and activity samples, the bulk of
# a body, each read straight into columns when plain (and decoded as JSON otherwise).
_BULK_KEYS: dict[str, frozenset[str]] = {
    summary_type: frozenset(key for key, _ in spec.series)
    for summary_type, spec in SPECS.items()
    if spec.series
} | {"activityDetails": frozenset({"samples"})}
# Nesting levels: the envelope object is 1, its lists 2, items 3, their values 4.
_ITEM_LEVEL, _VALUE_LEVEL = 3, 4
# A JSON string token (from outside any string: between the values of an object).
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _address(buffer: Any) -> int:
    return np.frombuffer(buffer, np.uint8).ctypes.data


def _keys_outside(whole: memoryview, spans: list[tuple[int, int]]) -> list[bytes]:
    """JSON strings of ``whole`` (an object's text) outside ``spans`` (its kept values, as
    offsets): its keys, and more when a parser dropped the value of a repeated key."""
    found, position = [], 0
    for start, end in sorted(spans):
        found += _JSON_STRING.findall(whole, position, start)
        position = end
    found += _JSON_STRING.findall(whole, position)
    return found


def _repeated(keys: list[bytes]) -> str:
    seen: set[str] = set()
    for raw in keys:
        key = msgspec.json.decode(raw)
        if key in seen:
            return key
        seen.add(key)
    return "?"  # a dropped value held strings of its own


def _decode_item(summary_type: str, raw: msgspec.Raw) -> Any:
    """One item as json.loads would decode it, but for its bulky values (see _BULK_KEYS),
    which stay Undecoded: each is read in whole-array operations or decoded when needed.
    FieldError for a repeated key, PayloadError when nested beyond MAX_DEPTH."""
    bulk = _BULK_KEYS.get(summary_type)
    if bulk is None:
        return decode_json(raw, _ITEM_LEVEL)
    try:
        fields = _FIELDS.decode(raw)  # a repeated key keeps its last value, as json.loads does
    except msgspec.ValidationError:  # not an object
        return decode_json(raw, _ITEM_LEVEL)
    if "callbackURL" in fields:  # kept whole in garmin_other_summaries
        return decode_json(raw, _ITEM_LEVEL)
    whole = memoryview(raw)
    base = _address(whole)
    spans = [(_address(v) - base, _address(v) - base + len(v)) for v in fields.values()]
    keys = _keys_outside(whole, spans)
    if len(keys) != len(fields):
        raise FieldError(f"duplicate key {text(_repeated(keys))!r}")
    return {
        key: Undecoded(value, _VALUE_LEVEL) if key in bulk else decode_json(value, _VALUE_LEVEL)
        for key, value in fields.items()
    }


_BOM = b"\xef\xbb\xbf"


def _parse_item_by_item(raw: bytes, erased: dict | None) -> ParsedPush:
    """Validate the whole body and split the envelope into items without decoding them
    (``msgspec.Raw``: slices of ``raw``, no copy), then decode each item, parse it and drop
    it before the next. Raises on anything but a non-empty envelope of lists, so the
    whole-body parse handles (and words) every other case."""
    data = memoryview(raw)
    if raw[:3] == _BOM:  # as "utf-8-sig" decoding: one byte-order mark is allowed
        data = data[3:]
    body = _ENVELOPE.decode(data)  # a repeated key keeps its last list, as json.loads does
    if not body:
        raise _NotPlainEnvelope("empty envelope")
    base = _address(data)
    spans = [
        (_address(items[0]) - base, _address(items[-1]) - base + len(items[-1]))
        for items in body.values()
        if items
    ]
    keys = _keys_outside(data, spans)
    if len(keys) != len(body):
        raise PayloadError(f"duplicate key {text(_repeated(keys))!r} in the envelope")
    _check_item_count(sum(map(len, body.values())))
    out = ParsedPush()
    index = 0
    for summary_type, items in body.items():
        out.item_counts[summary_type] = len(items)
        for position, item in enumerate(items):
            items[position] = None  # the decoded item is the only copy kept
            _add_item(out, summary_type, index, item, erased)
            index += 1
    return out
