"""A tiny FIT encoder for tests and benchmarks.

Why: the oracle tests of the vectorized record decoder need files that real devices rarely
produce (big-endian definitions, compressed timestamps rolling over, redefinitions, odd field
sizes, chained and damaged files) and the benchmark needs a long 1 s activity. This writes
them byte by byte: file header (12 or 14 bytes, header CRC), definition messages (with
developer fields), data messages (normal or compressed-timestamp header), file CRC.

Fields are named like in the FIT profile (``"heart_rate"``) and take the profile's base type
and size, or are given raw as ``(field def number, base type, size)``. Values are raw (before
scale/offset); ``None`` writes the base type's invalid value.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from fitdecode import profile as fit_profile
from fitdecode import types as fit_types
from fitdecode.utils import compute_crc

FIT_EPOCH_S = 631065600
SEMICIRCLES_PER_DEG = 2**31 / 180.0

UINT8, SINT8, ENUM, BYTE, STRING = 0x02, 0x01, 0x00, 0x0D, 0x07
UINT16, SINT16, UINT32, SINT32, FLOAT32 = 0x84, 0x83, 0x86, 0x85, 0x88
UINT8Z, UINT16Z, UINT32Z, UINT64 = 0x0A, 0x8B, 0x8C, 0x8F

_INVALID = {
    0x00: 0xFF,
    0x01: 0x7F,
    0x02: 0xFF,
    0x83: 0x7FFF,
    0x84: 0xFFFF,
    0x85: 0x7FFFFFFF,
    0x86: 0xFFFFFFFF,
    0x0A: 0,
    0x8B: 0,
    0x8C: 0,
    0x8E: 0x7FFFFFFFFFFFFFFF,
    0x8F: 0xFFFFFFFFFFFFFFFF,
    0x90: 0,
}


def mesg_num(message: int | str) -> int:
    if isinstance(message, int):
        return message
    for number, mesg in fit_profile.MESSAGE_TYPES.items():
        if mesg.name == message:
            return number
    raise KeyError(message)


def field_spec(message: int | str, name: str) -> tuple[int, int, int]:
    """(def number, base type, size) of a profile field."""
    for number, f in fit_profile.MESSAGE_TYPES[mesg_num(message)].fields.items():
        if f.name == name:
            base = f.type if isinstance(f.type, fit_types.BaseType) else f.type.base_type
            return number, base.identifier, base.size
    raise KeyError(f"{message}.{name}")


@dataclass
class _Def:
    fields: list[tuple[int, int, int]]  # def number, base type, size
    dev_fields: list[tuple[int, int, int, int]]  # def number, size, dev index, base type
    endian: str


def _encode(value, base_type: int, size: int, endian: str) -> bytes:
    if isinstance(value, bytes | bytearray):
        if len(value) != size:
            raise ValueError(f"{len(value)} bytes for a {size}-byte field")
        return bytes(value)
    base = fit_types.BASE_TYPES.get(base_type, fit_types.BASE_TYPE_BYTE)
    if base_type == STRING:
        raw = b"" if value is None else value.encode()
        return raw[:size].ljust(size, b"\x00")
    if base.identifier == BYTE or size % base.size:
        if value is None:
            return b"\xff" * size
        values = value if isinstance(value, tuple | list) else (value,)
        return bytes(values).ljust(size, b"\xff")
    count = size // base.size
    if value is None:
        if base.fmt in "fd":
            return struct.pack(f"{endian}{count}{base.fmt}", *([float("nan")] * count))
        value = (_INVALID[base_type],) * count
    values = value if isinstance(value, tuple | list) else (value,)
    values = [_INVALID.get(base_type, float("nan")) if v is None else v for v in values]
    return struct.pack(f"{endian}{count}{base.fmt}", *values)


class FitWriter:
    """Build one FIT file; ``chain()`` several for a chained file."""

    def __init__(self, *, header_size: int = 14, header_crc: bool = True) -> None:
        self.header_size = header_size
        self.header_crc = header_crc
        self.body = bytearray()
        self._defs: dict[int, _Def] = {}

    def define(
        self,
        local: int,
        message: int | str,
        fields: list[str | tuple[int, int, int]],
        *,
        big_endian: bool = False,
        dev_fields: tuple[tuple[int, int, int, int], ...] = (),
    ) -> FitWriter:
        """Definition message. ``dev_fields``: (def number, size, dev index, base type)."""
        global_num = mesg_num(message)
        specs = [f if isinstance(f, tuple) else field_spec(global_num, f) for f in fields]
        endian = ">" if big_endian else "<"
        header = 0x40 | local | (0x20 if dev_fields else 0)
        out = bytearray([header, 0, 1 if big_endian else 0])
        out += struct.pack(f"{endian}HB", global_num, len(specs))
        for number, base_type, size in specs:
            out += bytes([number, size, base_type])
        if dev_fields:
            out.append(len(dev_fields))
            for number, size, index, _ in dev_fields:
                out += bytes([number, size, index])
        self.body += out
        self._defs[local] = _Def(specs, list(dev_fields), endian)
        return self

    def write(self, local: int, *values, compressed: int | None = None) -> FitWriter:
        """Data message; ``compressed`` = 5-bit time offset for a compressed header."""
        d = self._defs[local]
        if compressed is None:
            out = bytearray([local])
        else:
            if local > 3:
                raise ValueError("compressed headers address local types 0-3 only")
            out = bytearray([0x80 | (local << 5) | (compressed & 0x1F)])
        specs = [(b, s) for _, b, s in d.fields] + [(b, s) for _, s, _, b in d.dev_fields]
        if len(values) != len(specs):
            raise ValueError(f"{len(values)} values for {len(specs)} fields")
        for value, (base_type, size) in zip(values, specs, strict=True):
            out += _encode(value, base_type, size, d.endian)
        self.body += out
        return self

    def raw(self, chunk: bytes) -> FitWriter:
        self.body += chunk
        return self

    def developer_data_id(self, local: int, index: int) -> FitWriter:
        self.define(local, "developer_data_id", ["developer_data_index", (1, BYTE, 16)])
        return self.write(local, index, bytes(range(16)))

    def field_description(
        self, local: int, index: int, number: int, base_type: int, name: str
    ) -> FitWriter:
        self.define(
            local,
            "field_description",
            [
                "developer_data_index",
                "field_definition_number",
                "fit_base_type_id",
                (3, STRING, 16),
            ],
        )
        return self.write(local, index, number, base_type, name)

    def to_bytes(self, *, crc: int | None = None) -> bytes:
        header = bytearray([self.header_size, 0x20])
        header += struct.pack("<HI", 2132, len(self.body)) + b".FIT"
        if self.header_size == 14:
            header += struct.pack("<H", compute_crc(bytes(header)) if self.header_crc else 0)
        chunk = bytes(header) + bytes(self.body)
        file_crc = compute_crc(chunk) if crc is None else crc
        return chunk + struct.pack("<H", file_crc)


def chain(*files: bytes) -> bytes:
    return b"".join(files)


RECORD_FIELDS = [
    "timestamp",
    "position_lat",
    "position_long",
    "distance",
    "enhanced_speed",
    "enhanced_altitude",
    "heart_rate",
    "cadence",
    "power",
    "temperature",
]


def activity_file(
    n_records: int = 14_400, *, start: int = 1_000_000_000, lap_every: int = 300, seed: int = 0
) -> bytes:
    """A realistic 1 s ride: file_id, timer events, records, a lap every ``lap_every`` s,
    session, activity. GPS is missing for the first 10 s and power drops out for a minute
    (invalid values), like on a real device.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_records)
    speed = np.clip(8.0 + np.cumsum(rng.normal(0, 0.05, n_records)), 2.0, 15.0)  # m/s
    distance = np.cumsum(speed)
    altitude = 300 + 50 * np.sin(t / 900.0) + rng.normal(0, 0.2, n_records)
    lat = 47.0 + np.cumsum(speed * 0.6) / 111_000.0
    lon = 8.0 + np.cumsum(speed * 0.8) / 75_000.0
    hr = np.clip(130 + 20 * np.sin(t / 600.0) + rng.normal(0, 2, n_records), 60, 200)
    cadence = np.clip(85 + rng.normal(0, 4, n_records), 0, 140)
    power = np.clip(200 + 60 * np.sin(t / 120.0) + rng.normal(0, 15, n_records), 0, 1500)
    temperature = 18 + 4 * np.sin(t / 3600.0)

    w = FitWriter()
    w.define(0, "file_id", ["type", "manufacturer", "product", "serial_number", "time_created"])
    w.write(0, 4, 1, 3121, 3_900_000_001, start)
    w.define(1, "event", ["timestamp", "event", "event_type", "data"])  # data: timer_trigger
    w.write(1, start, 0, 0, 0)  # timer start
    w.define(2, "record", RECORD_FIELDS)
    lap_fields = [
        "timestamp",
        "start_time",
        "total_elapsed_time",
        "total_timer_time",
        "total_distance",
        "avg_heart_rate",
        "max_heart_rate",
        "lap_trigger",
    ]
    w.define(3, "lap", lap_fields)
    lap_start = 0
    for i in range(n_records):
        gps = i >= 10
        w.write(
            2,
            start + i,
            int(lat[i] * SEMICIRCLES_PER_DEG) if gps else None,
            int(lon[i] * SEMICIRCLES_PER_DEG) if gps else None,
            round(distance[i] * 100),
            round(speed[i] * 1000),
            round((altitude[i] + 500) * 5),
            round(hr[i]),
            round(cadence[i]),
            None if 3000 <= i < 3060 else round(power[i]),
            round(temperature[i]),
        )
        if (i + 1) % lap_every == 0 or i == n_records - 1:
            seconds = i + 1 - lap_start
            lap_hr = hr[lap_start : i + 1]
            lap_distance = distance[i] - (distance[lap_start - 1] if lap_start else 0.0)
            w.write(
                3,
                start + i,
                start + lap_start,
                seconds * 1000,
                seconds * 1000,
                round(lap_distance * 100),
                round(lap_hr.mean()),
                round(lap_hr.max()),
                2 if i < n_records - 1 else 7,  # distance, then session_end
            )
            lap_start = i + 1
    end = start + n_records - 1
    w.write(1, end, 0, 4, 0)  # timer stop_all
    w.define(
        4,
        "session",
        [
            "timestamp",
            "start_time",
            "total_elapsed_time",
            "total_timer_time",
            "total_distance",
            "sport",
            "sub_sport",
            "first_lap_index",
            "num_laps",
        ],
    )
    n_laps = -(-n_records // lap_every)
    w.write(
        4,
        end,
        start,
        n_records * 1000,
        n_records * 1000,
        round(distance[-1] * 100),
        2,
        0,
        0,
        n_laps,
    )
    w.define(5, "activity", ["timestamp", "local_timestamp", "num_sessions", "type"])
    w.write(5, end, end + 3600, 1, 0)
    return w.to_bytes()
