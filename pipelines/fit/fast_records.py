"""Vectorized decoding of FIT ``record`` messages, the hot path of ``decode_fit``.

Why this exists
---------------
fitdecode builds several Python objects per field of every message, so a 4 h ride at 1 s
(14,400 ``record`` messages) takes seconds to decode. But ``record`` messages are fixed-size
binary rows: once the definition message of a layout is known, every data message of that
layout has the same byte structure. This module therefore

1. walks the message *headers* of the file once. The walk predicts that the last few messages
   repeat (same header key, same size: a 1 s file is mostly ``record, record, ...`` or
   ``record, hrv, record, hrv, ...``) and verifies whole blocks of predicted header positions
   with one strided numpy comparison; it only steps message by message in Python where the
   prediction fails (definitions, laps, events, device info). Compressed-timestamp headers and
   developer-field definitions are understood. Every FIT file of a chained file is walked and
   its header and file CRCs are verified (vectorized CRC-16, see ``_crc16``);
2. gathers all ``record`` data messages of one layout with a single fancy-indexing call into an
   ``(n, size)`` uint8 array, viewed through a numpy structured dtype that follows the
   definition's architecture (byte order) flag;
3. converts the columns with the scale/offset of the FIT profile shipped by fitdecode
   (``fitdecode.profile``), including the component expansions fitdecode performs
   (``speed`` -> ``enhanced_speed``, ``altitude`` -> ``enhanced_altitude``), and turns the
   base-type invalid sentinels into nulls.

Identity contract
-----------------
``scan_records(data).records`` / ``decode_records_fast(data)`` is exactly
``decode_fit(data).records`` (same columns, dtypes, values, nulls, order; floats are computed
with the same IEEE operations as fitdecode, so they are bit-identical). That includes
fitdecode's quirks: a name resolves to the *first* field of that name in the decoded message
(component expansions come before the field they expand from, so an invalid ``speed`` listed
before a valid ``enhanced_speed`` gives null), a tuple value counts as missing, and
``enhanced_*`` wins over ``speed``/``altitude``. Accumulated components (the distance in
``compressed_speed_distance``, ``total_cycles``, ...) are running totals over the file,
computed with cumulative sums.

``scan_records(data, record_fields=True).record_fields`` is exactly decode_fit's
``record_fields`` (every other record field and the developer fields, as JSON text): each
distinct raw value of a field is decoded once with fitdecode's own functions (render, scale,
default data processor) and written with ``json``; the texts are then gathered per message.

Damaged files are reproduced too: fitdecode stops at the first FitError (CRC mismatch,
truncation, corrupt chained header, undefined local message) and decode_fit keeps what it
read before; the scan stops at the same point, keeps the same messages and records the
integrity class and exact problem text fitdecode would give (``FastRecords.damage``).

Whenever the file holds something this module does not reproduce bit for bit, it raises
``FastPathUnsupported`` (``decode_records_fast`` returns ``None``) and fitdecode decodes it:

* device-relative timestamps (< 0x10000000): anchoring them needs ``activity.local_timestamp``;
* typed record fields fitdecode decodes as floats or strings, 64-bit typed fields,
  components of arrays;
* developer fields that could change the typed columns (named like them), a developer field
  size that is not a multiple of its base type, a ``field_description`` fitdecode rejects;
* what makes fitdecode fail with something else than a FitError (zero-size fields, header
  sizes above 14, a message running past the end of its FIT body into the CRC).

``decode_fit_fast`` rebuilds the whole ``FitDecoded``, identical to ``decode_fit``: records and
record_fields from here, everything else from fitdecode run over ``rest_stream``, the file
with the data messages ``decode_fit`` never reads cut out (definitions and developer-data
messages kept, CRCs recomputed); warnings and errors are mapped back to the offsets/texts of
the original file. Files where cutting messages out could change what fitdecode does
(compressed timestamps on kept messages, messages fitdecode would crash on) go to fitdecode
whole.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import fitdecode
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from fitdecode import profile as fit_profile
from fitdecode import types as fit_types
from fitdecode.utils import compute_crc

if TYPE_CHECKING:
    from pipelines.fit.decode import FitDecoded

__all__ = [
    "FastPathUnsupported",
    "FastRecords",
    "RestStream",
    "decode_fit_fast",
    "decode_records_fast",
    "rest_stream",
    "scan_records",
]

FIT_EPOCH_S = 631065600  # 1989-12-31T00:00:00Z, the FIT epoch, in unix seconds
_RELATIVE_LIMIT = 0x10000000  # FIT date_time values below this are seconds since power-up
SEMICIRCLE_TO_DEG = 180.0 / 2**31

MESG_RECORD = 20
MESG_FIELD_DESCRIPTION = 206
MESG_DEVELOPER_DATA_ID = 207
FIELD_TIMESTAMP = 253
#: Messages ``decode_fit`` reads besides ``record``, and the two developer-data messages
#: fitdecode needs to interpret definitions: they stay in the rest stream.
REST_MESSAGE_NAMES = frozenset(
    {
        "file_id",
        "session",
        "lap",
        "event",
        "activity",
        "device_info",
        "device_settings",
        "workout",
        "workout_step",
        "length",
        "hrv",
        "field_description",
        "developer_data_id",
    }
)
REST_MESSAGES = frozenset(
    number for number, mesg in fit_profile.MESSAGE_TYPES.items() if mesg.name in REST_MESSAGE_NAMES
)

# Same columns and dtypes as pipelines.fit.decode.RECORD_SCHEMA (the tests assert it); kept
# here so that decode.py can import this module without an import cycle.
TS = pl.Datetime("ms", "UTC")
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
    "chain_index": pl.Int64(),  # which FIT file of a chained file
}
#: Output column -> FIT field names in the order ``decode_fit`` tries them.
_COLUMNS: dict[str, tuple[str, ...]] = {
    "distance_m": ("distance",),
    "speed_mps": ("enhanced_speed", "speed"),
    "hr_bpm": ("heart_rate",),
    "cadence": ("cadence",),
    "power_w": ("power",),
    "elevation_m": ("enhanced_altitude", "altitude"),
    "lat_deg": ("position_lat",),
    "lon_deg": ("position_long",),
    "temperature_c": ("temperature",),
}
_DEGREE_COLUMNS = frozenset({"lat_deg", "lon_deg"})
_NEEDED_NAMES = frozenset({"timestamp"}.union(*_COLUMNS.values()))


class FastPathUnsupported(ValueError):
    """The file holds something the vectorized path does not reproduce: use fitdecode."""


# --------------------------------------------------------------------------- base types


@dataclass(frozen=True, slots=True)
class _IntBase:
    kind: str  # numpy kind: "u" or "i"
    size: int
    invalid: int  # the value fitdecode turns into None


def _int_bases() -> dict[int, _IntBase]:
    """Integer base types of at most 32 bits, with their invalid sentinel, from fitdecode."""
    kinds = {"B": "u", "b": "i", "H": "u", "h": "i", "I": "u", "i": "i"}
    out = {}
    for number, base in fit_types.BASE_TYPES.items():
        if base.fmt not in kinds or base is fit_types.BASE_TYPE_BYTE:
            continue
        bits = 8 * base.size
        candidates = (0, (1 << bits) - 1, (1 << (bits - 1)) - 1)
        invalid = next(c for c in candidates if base.parse(c) is None)
        out[number] = _IntBase(kinds[base.fmt], base.size, invalid)
    return out


_INT_BASES = _int_bases()


# --------------------------------------------------------------------------- CRC-16


def _crc_tables() -> tuple[np.ndarray, np.ndarray]:
    # one-byte table, built from fitdecode's own CRC so both agree by construction
    t8 = np.array([compute_crc(bytes([b]), crc=0) for b in range(256)], dtype=np.uint32)
    # two-byte step: feeding word w from state c gives T16[c ^ w] (reflected CRC, no xor-out)
    x = np.arange(1 << 16, dtype=np.uint32)
    x = (x >> 8) ^ t8[x & 0xFF]
    x = (x >> 8) ^ t8[x & 0xFF]
    return t8.astype(np.uint16), x.astype(np.uint16)


_T8, _T16 = _crc_tables()
_T8_LIST = [int(v) for v in _T8]
_BITS8 = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.uint16)


def _apply(images: list[int], value: int) -> int:
    out, bit = 0, 0
    while value:
        if value & 1:
            out ^= images[bit]
        value >>= 1
        bit += 1
    return out


def _advance_images(n_words: int) -> list[int]:
    """The linear map 'feed n_words zero words' on the 16-bit CRC state, as basis images."""
    step = [int(_T16[1 << k]) for k in range(16)]  # one zero word
    result = [1 << k for k in range(16)]  # identity
    while n_words:
        if n_words & 1:
            result = [_apply(step, v) for v in result]
        step = [_apply(step, v) for v in step]
        n_words >>= 1
    return result


@functools.lru_cache(maxsize=256)
def _fold_tables(words_per_chunk: int, levels: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per fold level, the (low byte, high byte) tables of 'advance over one chunk'."""
    images = _advance_images(words_per_chunk)
    tables = []
    for _ in range(levels):
        img = np.array(images, dtype=np.uint16)
        lo = np.bitwise_xor.reduce(_BITS8 * img[:8], axis=1).astype(np.uint16)
        hi = np.bitwise_xor.reduce(_BITS8 * img[8:], axis=1).astype(np.uint16)
        tables.append((lo, hi))
        images = [_apply(images, v) for v in images]  # chunks double in length
    return tuple(tables)


def _crc16(block: np.ndarray) -> int:
    """FIT CRC-16 of a uint8 array, vectorized.

    Why: fitdecode checks the CRC byte by byte in Python, which alone costs more than this
    whole module. The block is left-padded with zeros (they don't change a CRC that starts at
    0), cut into 2**k equal chunks whose CRCs advance together two bytes per numpy step; the
    chunk CRCs are then folded pairwise (CRC is linear: crc(A+B) = advance(crc(A), |B|) ^
    crc(B)), with the 'advance' maps as two 256-entry tables per level.
    """
    n = int(block.size)
    if n < 256:
        crc, table = 0, _T8_LIST
        for b in block.tolist():
            crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
        return crc
    levels = max(0, min(12, (n // 256).bit_length()))
    n_chunks = 1 << levels
    words_per_chunk = -(-n // (2 * n_chunks))
    padded = np.zeros(2 * n_chunks * words_per_chunk, dtype=np.uint8)
    padded[padded.size - n :] = block
    words = padded.view("<u2").reshape(n_chunks, words_per_chunk).T.copy()
    crc = np.zeros(n_chunks, dtype=np.uint16)
    table = _T16
    for row in words:
        crc = table[crc ^ row]
    for lo, hi in _fold_tables(words_per_chunk, levels):
        crc = lo[crc[0::2] & 0xFF] ^ hi[crc[0::2] >> 8] ^ crc[1::2]
    return int(crc[0])


# --------------------------------------------------------------------------- the header walk


@dataclass(frozen=True, slots=True)
class _Layout:
    """One definition message's byte layout (shared by every redefinition that is identical)."""

    global_num: int
    big_endian: bool
    fields: tuple[tuple[int, int, int], ...]  # (field def number, size, base type) in order
    dev_fields: tuple[tuple[int, int, int], ...]  # (field def number, size, dev data index)
    size: int  # payload bytes of a data message (the header byte excluded)

    def field_offsets(self) -> list[int]:
        offsets, at = [], 1  # byte 0 of a data message is its header
        for _, size, _ in self.fields:
            offsets.append(at)
            at += size
        return offsets


@dataclass(slots=True)
class _Section:
    header_offset: int
    header_size: int
    body_start: int
    body_end: int


@dataclass
class _Scan:
    """Where every message of the file is: the output of the header walk."""

    data: bytes
    buf: np.ndarray
    sections: list[_Section] = field(default_factory=list)
    layouts: list[_Layout] = field(default_factory=list)
    layout_ids: dict[tuple, int] = field(default_factory=dict)
    # data messages as runs: offsets first + i * stride for i < count, all of one layout
    seg_first: list[int] = field(default_factory=list)
    seg_stride: list[int] = field(default_factory=list)
    seg_count: list[int] = field(default_factory=list)
    seg_layout: list[int] = field(default_factory=list)
    definitions: list[tuple[int, int, int]] = field(default_factory=list)  # offset, length, id
    compressed: bool = False  # any compressed-timestamp header in the file
    # fitdecode would stop early (messages after that point dropped): decode_fit's integrity
    # class and problem text (the FitError's message), reproduced exactly
    damage: str | None = None
    damage_kind: str | None = None
    walked_messages: int = 0  # messages stepped over one by one (diagnostics)
    _runs: tuple[np.ndarray, ...] | None = field(default=None, repr=False)

    def offsets(self, layout_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Offsets (sorted, i.e. file order) and layout ids of the data messages of layouts."""
        if self._runs is None or self._runs[0].size != len(self.seg_first):
            self._runs = tuple(
                np.asarray(runs, dtype=np.int64)
                for runs in (self.seg_first, self.seg_stride, self.seg_count, self.seg_layout)
            )
        first, stride, count, layout = self._runs
        keep = np.isin(layout, layout_ids)
        first, stride, count, layout = first[keep], stride[keep], count[keep], layout[keep]
        run = np.repeat(np.arange(first.size), count)
        within = np.arange(run.size) - np.repeat(np.cumsum(count) - count, count)
        offsets = first[run] + within * stride[run]
        order = np.argsort(offsets, kind="stable")
        return offsets[order], layout[run][order]


def _header_test(key: int) -> tuple[int, int]:
    """(mask, value) such that header byte ``b`` has ``key`` iff ``b & mask == value``.

    Keys: a normal data header's key is its local type (0-15; bits 4-5 are ignored by
    fitdecode), a compressed-timestamp header's is 0x80 | local (0-3), its 5-bit time offset
    masked out. Within one definition context, equal keys mean equal layouts and sizes.
    """
    if key & 0x80:
        return 0xE0, 0x80 | ((key & 0x3) << 5)
    return 0xCF, key


def _walk_body(scan: _Scan, start: int, end: int) -> None:
    """Locate every message of one FIT body; see the module docstring for the prediction."""
    data = scan.data
    n = len(data)
    local: list[int] = [-1] * 16
    sizes = [layout.size for layout in scan.layouts]
    hist_keys: list[int] = []
    hist_sizes: list[int] = []
    hist_layouts: list[int] = []
    first, stride, count, seg_layout = (
        scan.seg_first,
        scan.seg_stride,
        scan.seg_count,
        scan.seg_layout,
    )
    pos = start
    walked = 0
    limit = min(end, n)
    while pos < limit:
        h = data[pos]
        walked += 1
        if h & 0x80:
            key = 0x80 | ((h >> 5) & 0x3)
            layout = local[(h >> 5) & 0x3]
            scan.compressed = True
        elif h & 0x40:
            layout, length = _definition(scan, pos, end)
            local[h & 0xF] = layout
            while len(sizes) < len(scan.layouts):
                sizes.append(scan.layouts[len(sizes)].size)
            pos += length
            hist_keys.clear()
            hist_sizes.clear()
            hist_layouts.clear()
            continue
        else:
            key = h & 0x0F
            layout = local[key]
        if layout < 0:
            number = (h >> 5) & 0x3 if h & 0x80 else h & 0xF
            problem = f"FIT parsing error @ {pos}: local message {number} not defined"
            raise _Stop("corrupt_data", problem)
        size = 1 + sizes[layout]
        if pos + size > limit:
            if pos + size > n:
                raise _eof(_data_reads(scan.layouts[layout], pos), n)
            # fitdecode reads it anyway and then fails an assertion: keep that behaviour there
            raise FastPathUnsupported(f"message crosses the end of the FIT body @ {pos}")
        first.append(pos)
        stride.append(size)
        count.append(1)
        seg_layout.append(layout)
        pos += size
        hist_keys.append(key)
        hist_sizes.append(size)
        hist_layouts.append(layout)
        n_hist = len(hist_keys)
        if n_hist > 32:
            del hist_keys[:16], hist_sizes[:16], hist_layouts[:16]
            n_hist -= 16
        for period in (1, 2, 3, 4):
            if n_hist < 2 * period:
                break
            if hist_keys[-period:] != hist_keys[-2 * period : -period]:
                continue
            pattern = hist_keys[-period:]
            pattern_sizes = hist_sizes[-period:]
            cycles = _probe(scan.buf, pos, limit, pattern, pattern_sizes)
            if cycles:
                cycle = sum(pattern_sizes)
                at = pos
                for size_j, layout_j in zip(pattern_sizes, hist_layouts[-period:], strict=True):
                    first.append(at)
                    stride.append(cycle)
                    count.append(cycles)
                    seg_layout.append(layout_j)
                    at += size_j
                pos += cycles * cycle
            break
    scan.walked_messages += walked
    if pos < end:
        raise _eof([(pos, 1)], n)  # the next message's header byte


def _probe(buf: np.ndarray, pos: int, end: int, pattern: list[int], sizes: list[int]) -> int:
    """How many whole repetitions of the message pattern start at ``pos``.

    Exact, not heuristic: if the header at a predicted position has the predicted key, that
    message has the predicted size, so the next predicted position is a true message start.
    Blocks of growing size are verified with strided slices of the file's bytes.
    """
    cycle = sum(sizes)
    tests = []
    offset = 0
    for key, size in zip(pattern, sizes, strict=True):
        tests.append((offset, *_header_test(key)))
        offset += size
    max_cycles = (end - pos) // cycle
    done, block = 0, 32
    while done < max_cycles:
        take = min(block, max_cycles - done)
        base = pos + done * cycle
        stop = base + take * cycle
        bad = None
        for offset, mask, value in tests:
            mismatch = (buf[base + offset : stop : cycle] & mask) != value
            bad = mismatch if bad is None else bad | mismatch
        if bad.any():
            return done + int(bad.argmax())
        done += take
        block <<= 3
    return done


class _Stop(Exception):
    """fitdecode would raise a FitError here: it keeps what it decoded before, and so do we.

    ``kind`` is decode_fit's integrity class of that error, ``problem`` its exact text.
    """

    def __init__(self, kind: str, problem: str) -> None:
        super().__init__(problem)
        self.kind = kind
        self.problem = problem


def _eof(reads: list[tuple[int, int]], n: int) -> _Stop:
    """fitdecode's FitEOFError for the first of its reads (offset, size) that passes EOF."""
    for offset, size in reads:
        if offset + size > n:
            got = max(0, n - offset)
            return _Stop("truncated", f"expected {size} bytes, got {got} @ {offset}")
    raise AssertionError("no read passes the end of the file")


def _data_reads(layout: _Layout, pos: int) -> list[tuple[int, int]]:
    """The reads fitdecode makes for a data message: header byte, then field by field."""
    reads, at = [(pos, 1)], pos + 1
    for size in [f[1] for f in layout.fields] + [f[1] for f in layout.dev_fields]:
        reads.append((at, size))
        at += size
    return reads


def _definition(scan: _Scan, pos: int, end: int) -> tuple[int, int]:
    """Parse one definition message; returns (layout id, message length)."""
    data = scan.data
    n = len(data)
    header = data[pos]
    n_fields = data[pos + 5] if pos + 6 <= n else 0
    at = pos + 6 + 3 * n_fields
    n_dev = 0
    if header & 0x20 and at < n:
        n_dev = data[at]
    length = at - pos + (1 + 3 * n_dev if header & 0x20 else 0)
    if pos + length > n:  # fitdecode reads: header, 5 bytes, 3 per field, [1, 3 per dev field]
        reads = [(pos, 1), (pos + 1, 5)] + [(pos + 6 + 3 * i, 3) for i in range(n_fields)]
        if header & 0x20:
            reads += [(at, 1)] + [(at + 1 + 3 * i, 3) for i in range(n_dev)]
        raise _eof(reads, n)
    if pos + length > end:
        # fitdecode reads it anyway and then fails an assertion: keep that behaviour there
        raise FastPathUnsupported(f"definition message crosses the end of the body @ {pos}")
    big = data[pos + 2] != 0
    global_num = int.from_bytes(data[pos + 3 : pos + 5], "big" if big else "little")
    raw = data[pos + 6 : at]
    fields = tuple(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
    dev_fields: tuple[tuple[int, int, int], ...] = ()
    if header & 0x20:
        raw = data[at + 1 : at + 1 + 3 * n_dev]
        dev_fields = tuple(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
    sizes = [f[1] for f in fields] + [f[1] for f in dev_fields]
    if 0 in sizes:
        # fitdecode raises ValueError reading a zero-size field: keep that behaviour there
        raise FastPathUnsupported(f"zero-size field in definition @ {pos}")
    key = (global_num, big, fields, dev_fields)
    layout = scan.layout_ids.get(key)
    if layout is None:
        layout = len(scan.layouts)
        scan.layout_ids[key] = layout
        scan.layouts.append(_Layout(global_num, big, fields, dev_fields, sum(sizes)))
    scan.definitions.append((pos, length, layout))
    return layout, length


def _scan(data: bytes) -> _Scan:
    """Walk every FIT file of a (possibly chained) stream, verifying headers and CRCs.

    A damaged stream is walked as far as fitdecode gets before raising a ``FitError``
    (truncation, CRC mismatch, corrupt header, undefined local message): ``scan.damage`` says
    what stopped it, and the messages before that point are kept, as ``decode_fit`` keeps them.
    Damage that makes fitdecode fail with something else than a ``FitError`` (assertion,
    struct error) raises ``FastPathUnsupported``.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    scan = _Scan(data, buf)
    n, pos = len(data), 0
    try:
        while pos < n:
            if n - pos < 12:
                eof = f"expected 12 bytes, got {n - pos} @ {pos}"
                raise _Stop("corrupt_header", f"file truncated? {eof}")
            header_size = data[pos]
            if data[pos + 8 : pos + 12] != b".FIT" or header_size < 12:
                raise _Stop("corrupt_header", f"not a FIT file @ {pos}")
            if header_size == 13:
                problem = f"unsupported FIT header (CRC field missing; header offset: {pos})"
                raise _Stop("corrupt_header", problem)
            if header_size > 14:  # fitdecode fails with a struct.error: keep that there
                raise FastPathUnsupported(f"FIT header of {header_size} bytes @ {pos}")
            if pos + header_size > n:
                raise _eof([(pos + 12, 2)], n)
            if header_size == 14:
                header_crc = int.from_bytes(data[pos + 12 : pos + 14], "little")
                if header_crc and _crc16(buf[pos : pos + 12]) != header_crc:
                    problem = f"mismatching CRC in FIT header (header offset: {pos})"
                    raise _Stop("crc_mismatch", problem)
            body_start = pos + header_size
            body_end = body_start + int.from_bytes(data[pos + 4 : pos + 8], "little")
            scan.sections.append(_Section(pos, header_size, body_start, body_end))
            _walk_body(scan, body_start, body_end)
            if body_end + 2 > n:
                raise _eof([(body_end, 2)], n)
            read_crc = int.from_bytes(data[body_end : body_end + 2], "little")
            crc = _crc16(buf[pos:body_end])
            if crc != read_crc:
                problem = (
                    f"mismatching CRC in FIT footer (footer offset: {body_end}; "
                    f"read crc: {read_crc}; expected crc: {crc})"
                )
                raise _Stop("crc_mismatch", problem)
            pos = body_end + 2
    except _Stop as stop:
        scan.damage, scan.damage_kind = stop.problem, stop.kind
    if not scan.sections:
        raise FastPathUnsupported(f"no readable FIT file: {scan.damage}")
    return scan


# --------------------------------------------------------------------------- field access


def _rows(scan: _Scan, layout: _Layout, offsets: np.ndarray, indexes: set[int]) -> np.ndarray:
    """Every data message of one layout at ``offsets``, in ONE gather, as a structured array.

    Only the byte span covering the fields in ``indexes`` is copied: rows of a zero-copy
    sliding-window view of the file are fancy-indexed, then viewed through a structured dtype
    (field ``f{i}`` = layout field i, byte order from the definition's architecture flag;
    fields that are not a scalar integer come out as raw byte arrays).
    """
    starts = layout.field_offsets()
    lo = min(starts[i] for i in indexes)
    hi = max(starts[i] + layout.fields[i][1] for i in indexes)
    names, formats, positions = [], [], []
    for i in sorted(indexes):
        _, size, base_type = layout.fields[i]
        base = _INT_BASES.get(base_type)
        names.append(f"f{i}")
        if base is not None and base.size == size:
            formats.append(_numpy_type(layout, base))
        else:
            formats.append((np.uint8, (size,)))
        positions.append(starts[i] - lo)
    dtype = np.dtype(
        {"names": names, "formats": formats, "offsets": positions, "itemsize": hi - lo}
    )
    block = _windows(scan.buf, hi - lo, offsets + lo)  # (n, hi - lo) uint8, a copy
    return block.view(dtype).reshape(offsets.size)


def _windows(buf: np.ndarray, size: int, starts: np.ndarray) -> np.ndarray:
    """``buf[s : s + size]`` for every s in ``starts``, as one (n, size) gather. A layout
    without messages may be defined wider than the whole file: then there is nothing to
    gather, and no window of that size to make."""
    if starts.size == 0:
        return np.zeros((0, size), dtype=np.uint8)
    return np.lib.stride_tricks.sliding_window_view(buf, size)[starts]


def _int_field(layout: _Layout, index: int, what: str) -> _IntBase:
    _, size, base_type = layout.fields[index]
    base = _INT_BASES.get(base_type)
    if base is None or base.size != size:
        raise FastPathUnsupported(
            f"{what}: base type {base_type:#04x} with size {size} decodes to a tuple or float"
        )
    return base


def _numpy_type(layout: _Layout, base: _IntBase) -> str:
    return f"{'>' if layout.big_endian else '<'}{base.kind}{base.size}"


@dataclass(slots=True)
class _Source:
    """Where fitdecode's first field of a given name comes from in one record layout."""

    index: int  # position in layout.fields
    scale: float | None
    offset: float | None
    bits: int | None = None  # set for a component expansion
    bit_offset: int = 0
    accumulate: int | None = None  # target field number of an accumulated component


def _record_sources(layout: _Layout) -> dict[str, _Source]:
    """Name -> source of the *first* field of that name, in fitdecode's message field order.

    fitdecode appends, for each defined field in definition order, first the fields its
    components expand to, then the field itself; ``get_value(name)`` returns the first match.
    """
    fields = fit_profile.MESSAGE_TYPES[MESG_RECORD].fields
    found: dict[str, _Source] = {}
    for index, (def_num, _, _) in enumerate(layout.fields):
        profile_field = fields.get(def_num)
        if profile_field is None:
            continue
        for component in profile_field.components or ():
            name = fields[component.def_num].name
            if name in _NEEDED_NAMES and name not in found:
                found[name] = _Source(
                    index,
                    component.scale,
                    component.offset,
                    component.bits,
                    component.bit_offset,
                    component.def_num if component.accumulate else None,
                )
        if profile_field.name in _NEEDED_NAMES and profile_field.name not in found:
            found[profile_field.name] = _Source(index, profile_field.scale, profile_field.offset)
    return found


def _source_values(
    rows: np.ndarray,
    layout: _Layout,
    source: _Source,
    name: str,
    accumulated: dict[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(float64 values, valid mask, value-is-an-int-in-fitdecode) for one source.

    Besides scalar integers, two cases fitdecode turns into tuples are reproduced: a tuple is
    skipped by decode_fit's ``_value`` (so: all invalid), and a ``byte`` field feeding a
    component is read as one little-endian integer (``compressed_speed_distance``).
    """
    n = rows.size
    _, size, base_type = layout.fields[source.index]
    base = fit_types.BASE_TYPES.get(base_type, fit_types.BASE_TYPE_BYTE)
    if size % base.size:
        base = fit_types.BASE_TYPE_BYTE  # fitdecode's fallback for invalid field sizes
    int_base = _INT_BASES.get(base_type)
    column = rows[f"f{source.index}"]
    if base is fit_types.BASE_TYPE_BYTE:
        if source.bits is None:
            return np.zeros(n), np.zeros(n, dtype=bool), True
        if size > 7 or source.bit_offset >= 8 * size:
            raise FastPathUnsupported(f"record.{name}: component of a {size}-byte array")
        valid = ~np.all(column == 0xFF, axis=1)
        raw = np.zeros(n, dtype=np.int64)
        for i in range(size):
            raw |= column[:, i].astype(np.int64) << (8 * i)
    elif int_base is not None and size > int_base.size and source.bits is None:
        return np.zeros(n), np.zeros(n, dtype=bool), True  # an array: a tuple in fitdecode
    else:
        int_base = _int_field(layout, source.index, f"record.{name}")
        raw = column
        valid = raw != int_base.invalid
    if source.bits is not None:
        raw = (raw.astype(np.int64) >> source.bit_offset) & ((1 << source.bits) - 1)
    if source.accumulate is not None:  # the running total, computed over the whole file
        raw = accumulated[source.accumulate]
        valid = raw >= 0
    values = raw.astype(np.float64)
    if source.scale:
        values = values / source.scale
    if source.offset:
        values = values - source.offset
    return values, valid, not source.scale


# --------------------------------------------------------------------------- timestamps


def _compressed_timestamps(scan: _Scan) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and timestamps of every compressed-timestamp message, as fitdecode computes them.

    fitdecode keeps one accumulator per FIT file: any message's ``timestamp`` (field 253, when
    valid) sets it; a compressed header adds ``(offset - accumulator) mod 32``. Between two
    'set' events that is a cumulative sum of 5-bit deltas, which is what is computed here.
    """
    keys_pos: list[np.ndarray] = []
    is_set: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for section in scan.sections:  # the accumulator restarts at 0 in every FIT file
        keys_pos.append(np.array([2 * section.body_start - 1], dtype=np.int64))
        is_set.append(np.array([True]))
        values.append(np.zeros(1, dtype=np.int64))
    all_ids = list(range(len(scan.layouts)))
    offsets, layout_of = scan.offsets(all_ids)
    for layout_id, layout in enumerate(scan.layouts):
        if any(f[0] == FIELD_TIMESTAMP for f in layout.dev_fields):
            raise FastPathUnsupported("developer field 253 with compressed timestamps")
        indexes = [i for i, f in enumerate(layout.fields) if f[0] == FIELD_TIMESTAMP]
        if not indexes:
            continue
        mine = offsets[layout_of == layout_id]
        rows = _rows(scan, layout, mine, set(indexes))
        for index in indexes:
            base = _int_field(layout, index, "timestamp next to compressed timestamps")
            raw = rows[f"f{index}"]
            valid = raw != base.invalid
            # several 253 fields in one message: later ones overwrite, in field order
            keys_pos.append(2 * mine[valid])
            is_set.append(np.ones(int(valid.sum()), dtype=bool))
            values.append(raw[valid].astype(np.int64))
    headers = scan.buf[offsets]
    compressed = (headers & 0x80) != 0
    comp_offsets = offsets[compressed]
    keys_pos.append(2 * comp_offsets + 1)
    is_set.append(np.zeros(comp_offsets.size, dtype=bool))
    values.append((headers[compressed] & 0x1F).astype(np.int64))

    key = np.concatenate(keys_pos)
    order = np.argsort(key, kind="stable")
    setter = np.concatenate(is_set)[order]
    value = np.concatenate(values)[order]
    low = np.where(setter, value & 31, value)
    low_prev = np.concatenate(([0], low[:-1]))
    delta = np.where(setter, 0, (value - low_prev) & 31)
    group = np.cumsum(setter) - 1
    set_index = np.flatnonzero(setter)
    total = np.cumsum(delta)
    accumulated = value[set_index][group] + total - total[set_index][group]
    comp = ~setter
    return key[order][comp] // 2, accumulated[comp]


# --------------------------------------------------------------------------- developer data


_MISSING = object()


def _message_value(scan: _Scan, layout: _Layout, offset: int, def_num: int) -> Any:
    """One raw value of one message as fitdecode parses it: None if invalid, _MISSING if absent."""
    for (num, size, base_type), start in zip(layout.fields, layout.field_offsets(), strict=True):
        if num != def_num:
            continue
        chunk = scan.data[offset + start : offset + start + size]
        if base_type == 0x07:
            return fit_types.parse_string(chunk)
        base = _INT_BASES.get(base_type)
        if base is None or base.size != size:
            raise FastPathUnsupported(f"unexpected developer-data field type {base_type:#04x}")
        value = int.from_bytes(chunk, "big" if layout.big_endian else "little")
        if base.kind == "i" and value >= 1 << (8 * size - 1):
            value -= 1 << (8 * size)
        return None if value == base.invalid else value
    return _MISSING


#: per layout with developer fields, per developer field: (name, base type id) as fitdecode
#: resolved it when reading the definition
DevFields = dict[int, tuple[tuple[Any, int], ...]]


def _developer_fields(scan: _Scan) -> DevFields:
    """Emulate fitdecode's developer-type registry, in file order, for every definition.

    developer_data_id (re)declares an index with no fields, field_description adds a field
    (name, base type), a definition resolves its developer fields against what is declared at
    that point (an unknown one becomes an unnamed ``byte`` field, with a warning); everything
    restarts with each FIT file of a chain. Raises ``FastPathUnsupported`` where fitdecode
    would fail (field_description for an undeclared index, unknown base type, ...) or where
    the message size would not be the declared one (size not a multiple of the base type).
    """
    dev_layouts = {i for i, layout in enumerate(scan.layouts) if layout.dev_fields}
    if not dev_layouts:
        return {}
    ids = [
        i
        for i, layout in enumerate(scan.layouts)
        if layout.global_num in (MESG_FIELD_DESCRIPTION, MESG_DEVELOPER_DATA_ID)
    ]
    offsets, layout_of = scan.offsets(ids)
    events = [(int(o), 2, int(lay)) for o, lay in zip(offsets, layout_of, strict=True)]
    events += [(o, 1, lay) for o, _, lay in scan.definitions if lay in dev_layouts]
    events += [(s.header_offset, 0, -1) for s in scan.sections]
    events.sort()
    registry: dict[Any, dict[Any, tuple[Any, int]]] = {}
    resolved: DevFields = {}
    for offset, kind, layout_id in events:
        if kind == 0:
            registry = {}
            continue
        layout = scan.layouts[layout_id]
        if kind == 1:
            fields = []
            for def_num, size, dev_index in layout.dev_fields:
                declared = registry.setdefault(dev_index, {})  # fitdecode: dummy type
                name, base_type = declared.setdefault(def_num, (None, 0x0D))  # unnamed byte
                if size % fit_types.BASE_TYPES[base_type].size:
                    raise FastPathUnsupported("developer field size not a multiple of its type")
                fields.append((name, base_type))
            if resolved.setdefault(layout_id, tuple(fields)) != tuple(fields):
                raise FastPathUnsupported("one layout, several developer field resolutions")
            continue
        if layout.global_num == MESG_DEVELOPER_DATA_ID:
            index = _message_value(scan, layout, offset, 3)
            if index is None:  # fitdecode: int(None)
                raise FastPathUnsupported("developer_data_id with an invalid index")
            registry[None if index is _MISSING else index] = {}
            continue
        index = _message_value(scan, layout, offset, 0)
        if index is _MISSING:
            index = None
        if index not in registry:  # fitdecode raises FitParseError
            raise FastPathUnsupported("field_description for an undeclared developer index")
        number = _message_value(scan, layout, offset, 1)
        base_type = _message_value(scan, layout, offset, 2)
        if base_type is None or base_type is _MISSING:
            base_type = 0x0D
        if base_type not in fit_types.BASE_TYPES:  # fitdecode: KeyError
            raise FastPathUnsupported(f"field_description with unknown base type {base_type}")
        name = _message_value(scan, layout, offset, 3)
        registry[index][None if number is _MISSING else number] = (
            None if name is _MISSING else name,
            base_type,
        )
    for layout_id, fields in resolved.items():
        if scan.layouts[layout_id].global_num == MESG_RECORD:
            clash = {name for name, _ in fields} & _NEEDED_NAMES
            if clash:
                raise FastPathUnsupported(f"developer field named like a record field: {clash}")
    return resolved


# --------------------------------------------------------------------------- accumulation


def _accumulations(
    scan: _Scan, record_ids: list[int], offsets: np.ndarray, layout_of: np.ndarray
) -> dict[int, np.ndarray]:
    """Accumulated record components (distance of compressed_speed_distance, total_cycles, ...).

    fitdecode keeps a running total per target field: a value adds ``(raw - previous raw) mod
    2**bits``; it restarts at 0 with every definition of a record layout holding a field
    with such a component, and with every FIT file. Returned per target, aligned with
    ``offsets``: the total for each record, -1 where fitdecode has none.
    """
    profile_fields = fit_profile.MESSAGE_TYPES[MESG_RECORD].fields
    plans: dict[int, list[tuple[int, int, Any]]] = {}  # target -> (layout, field index, comp)
    resetting: dict[int, set[int]] = {}  # target -> layouts whose definition resets it
    for layout_id in record_ids:
        for index, (def_num, _, _) in enumerate(scan.layouts[layout_id].fields):
            profile_field = profile_fields.get(def_num)
            for component in (profile_field.components or ()) if profile_field else ():
                if component.accumulate:
                    plans.setdefault(component.def_num, []).append((layout_id, index, component))
                    resetting.setdefault(component.def_num, set()).add(layout_id)
    result = {}
    for target, plan in plans.items():
        if len({layout_id for layout_id, _, _ in plan}) != len(plan):
            raise FastPathUnsupported("two fields accumulating into one target in a layout")
        raw = np.full(offsets.size, -1, dtype=np.int64)
        bits = plan[0][2].bits
        for layout_id, index, component in plan:
            if component.bits != bits:
                raise FastPathUnsupported("accumulated component with varying bit widths")
            rows = np.flatnonzero(layout_of == layout_id)
            layout = scan.layouts[layout_id]
            chunks = _field_bytes(scan, layout, offsets[rows], index)
            distinct, inverse = _distinct(chunks)
            values = []
            for chunk in distinct:
                try:
                    value = component.render(_parse_raw(layout, index, chunk))
                except ValueError:  # fitdecode skips the component (no value, no total)
                    value = None
                values.append(-1 if value is None else value)
            raw[rows] = np.asarray(values, dtype=np.int64)[inverse]
        resets = [o for o, _, lay in scan.definitions if lay in resetting[target]]
        resets += [section.body_start for section in scan.sections]
        has = raw >= 0
        key = np.concatenate([2 * np.asarray(resets, dtype=np.int64), 2 * offsets[has] + 1])
        order = np.argsort(key, kind="stable")
        value = np.concatenate([np.zeros(len(resets), dtype=np.int64), raw[has]])[order]
        is_reset = np.concatenate([np.ones(len(resets), bool), np.zeros(int(has.sum()), bool)])
        is_reset = is_reset[order]
        previous = np.concatenate(([0], value[:-1]))
        delta = np.where(is_reset, 0, (value - previous) & ((1 << bits) - 1))
        total = np.cumsum(delta)
        reset_total = total[np.flatnonzero(is_reset)][np.cumsum(is_reset) - 1]
        accumulated = (total - reset_total)[~is_reset]
        out = np.full(offsets.size, -1, dtype=np.int64)
        out[np.flatnonzero(has)] = accumulated  # offsets are sorted: same order
        result[target] = out
    return result


# --------------------------------------------------------------------------- record fields

_PROCESSOR = fitdecode.DefaultDataProcessor()
_ABSENT = object()  # a component fitdecode does not expand for this value


def _field_bytes(
    scan: _Scan, layout: _Layout, offsets: np.ndarray, index: int, developer: bool = False
) -> np.ndarray:
    """(n, size) raw bytes of one field (or developer field) of the messages at ``offsets``."""
    starts = layout.field_offsets()
    if developer:
        start = 1 + sum(f[1] for f in layout.fields) + sum(f[1] for f in layout.dev_fields[:index])
        size = layout.dev_fields[index][1]
    else:
        start, size = starts[index], layout.fields[index][1]
    return _windows(scan.buf, size, offsets + start)


def _distinct(chunks: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """Distinct rows (as bytes) and, per row, the index of its distinct value."""
    n, size = chunks.shape
    if n == 0:
        return [], np.zeros(0, dtype=np.int64)
    if size <= 8:
        padded = np.zeros((n, 8), dtype=np.uint8)
        padded[:, :size] = chunks
        _, first, inverse = np.unique(
            padded.view("<u8").ravel(), return_index=True, return_inverse=True
        )
    else:
        _, first, inverse = np.unique(chunks, axis=0, return_index=True, return_inverse=True)
    return [chunks[i].tobytes() for i in first], inverse.ravel()


def _parse_raw(layout: _Layout, index: int, chunk: bytes, developer_base: int | None = None):
    """A field's raw value exactly as fitdecode's ``_read_data_message_raw_values`` makes it."""
    if developer_base is None:
        base = fit_types.BASE_TYPES.get(layout.fields[index][2], fit_types.BASE_TYPE_BYTE)
        if len(chunk) % base.size:
            base = fit_types.BASE_TYPE_BYTE
    else:
        base = fit_types.BASE_TYPES[developer_base]
    endian = ">" if layout.big_endian else "<"
    raw = struct.unpack(f"{endian}{len(chunk) // base.size}{base.fmt}", chunk)
    if base.identifier == fit_types.BASE_TYPE_BYTE.identifier:
        return base.parse(raw)
    if len(raw) > 1:
        return tuple(base.parse(v) for v in raw)
    return base.parse(raw[0])


def _processed(field_obj: Any, value: Any, raw: Any) -> Any:
    """The value after fitdecode's default data processor (date_time, bool, ... fields)."""
    data = fit_types.FieldData(None, field_obj, None, value, raw)
    _PROCESSOR.on_process_type(None, data)
    _PROCESSOR.on_process_field(None, data)
    _PROCESSOR.on_process_unit(None, data)
    return data.value


@dataclass(frozen=True)
class _Item:
    """One entry of fitdecode's decoded message: a field, a component expansion, a dev field."""

    name: Any
    developer: bool
    index: int  # into layout.fields, or layout.dev_fields for a developer field
    field: Any  # profile Field; the target Field of a component; a DevField
    component: Any = None
    base_type: int | None = None  # developer fields: their base type


def _message_items(layout: _Layout, dev_fields: tuple[tuple[Any, int], ...]) -> list[_Item]:
    """The decoded message's fields in fitdecode's order (unknown fields left out)."""
    profile_fields = fit_profile.MESSAGE_TYPES[layout.global_num].fields
    items = []
    for index, (def_num, _, _) in enumerate(layout.fields):
        profile_field = profile_fields.get(def_num)
        if profile_field is None:
            continue
        if profile_field.subfields:
            raise FastPathUnsupported(f"record field with subfields: {profile_field.name}")
        for component in profile_field.components or ():
            target = profile_fields[component.def_num]
            items.append(_Item(target.name, False, index, target, component))
        items.append(_Item(profile_field.name, False, index, profile_field))
    for index, ((def_num, _, dev_index), (name, base_type)) in enumerate(
        zip(layout.dev_fields, dev_fields, strict=True)
    ):
        dev = fit_types.DevField(
            dev_index, name, def_num, fit_types.BASE_TYPES[base_type], None, None
        )
        items.append(_Item(name, True, index, dev, None, base_type))
    return items


def _item_value(item: _Item, layout: _Layout, chunk: bytes) -> Any:
    """fitdecode's final value of one item for one raw chunk (``_ABSENT``: not in message)."""
    raw = _parse_raw(layout, item.index, chunk, item.base_type if item.developer else None)
    if item.developer:
        return _processed(item.field, raw, raw)
    if item.component is None:
        value = fitdecode.FitReader._apply_scale_offset(item.field, item.field.render(raw))
        return _processed(item.field, value, raw)
    try:
        value = item.component.render(raw)
    except ValueError:
        return _ABSENT
    return _component_value(item, value)


def _component_value(item: _Item, value: Any) -> Any:
    value = fitdecode.FitReader._apply_scale_offset(item.component, value)
    value = item.field.render(value)
    return _processed(item.field, value, value)


def _value_texts(
    scan: _Scan,
    layout: _Layout,
    offsets: np.ndarray,
    item: _Item,
    accumulated: np.ndarray | None,
) -> tuple[list[str | None], np.ndarray]:
    """The JSON texts of this item's distinct values as decode_fit writes them (None: no
    value) and, per message, the index of its text.

    Computed once per distinct raw value with fitdecode's own functions.
    """
    from pipelines.fit.decode import _plain  # lazy: decode.py may import this module

    if item.component is not None and item.component.accumulate:
        distinct, inverse = np.unique(accumulated, return_inverse=True)
        values = [None if v < 0 else _component_value(item, int(v)) for v in distinct.tolist()]
        texts = [None if v is None else json.dumps(_plain(v)) for v in values]
    else:
        chunks = _field_bytes(scan, layout, offsets, item.index, item.developer)
        distinct, inverse = _distinct(chunks)
        numeric = _plain_number(item, layout)
        if numeric is not None:
            texts = [numeric(chunk) for chunk in distinct]
        else:
            values = [_item_value(item, layout, chunk) for chunk in distinct]
            texts = [None if v is None or v is _ABSENT else json.dumps(_plain(v)) for v in values]
    return texts, inverse.ravel()


# value types fitdecode's default processor rewrites (the plain-number shortcut avoids them)
_PROCESSED_TYPES = frozenset({"bool", "date_time", "local_date_time", "localtime_into_day"})


def _number_text(value: int | float) -> str:
    """``json.dumps`` of a number (float repr; Infinity/NaN spelled as json does)."""
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    return repr(value)


def _plain_number(item: _Item, layout: _Layout) -> Callable[[bytes], str | None] | None:
    """A cheap exact replacement of ``_item_value`` + JSON for plain scalar numbers.

    Applies when fitdecode's value is just the base-type number, scaled: a scalar integer or
    float field without enum names or processor, a developer field, or a component of a
    scalar integer. ``None`` when that does not hold (the full emulation is used then).
    """
    if item.developer:
        base, size = fit_types.BASE_TYPES[item.base_type], layout.dev_fields[item.index][1]
    else:
        _, size, base_type = layout.fields[item.index]
        base = fit_types.BASE_TYPES.get(base_type)
        field_type = item.field.type
        if getattr(field_type, "enum", None) or field_type.name in _PROCESSED_TYPES:
            return None
    if (
        base is None
        or base.identifier == fit_types.BASE_TYPE_BYTE.identifier
        or base.size != size
        or base.fmt not in "bBhHiIqQfd"
    ):
        return None
    unpack = struct.Struct(("<" if not layout.big_endian else ">") + base.fmt).unpack
    parse = base.parse
    component = item.component
    if component is not None and (base.fmt in "fd" or component.accumulate):
        return None
    scale_from = component if component is not None else item.field
    scale, offset = (None, None) if item.developer else (scale_from.scale, scale_from.offset)

    def text(chunk: bytes) -> str | None:
        value = parse(unpack(chunk)[0])
        if value is None:
            return None
        if component is not None:
            value = (value >> component.bit_offset) & ((1 << component.bits) - 1)
        if scale:
            value = float(value) / scale
        if offset:
            value = value - offset
        return _number_text(value)

    return text


def _json_key(name: Any) -> str:
    """``'"name": '`` as json.dumps writes a dict key (None becomes "null", ...)."""
    return json.dumps({name: 0})[1:-1][:-1]


def _json_objects(columns: list[str], names: list[Any]) -> pl.Expr:
    """decode_fit's ``json.dumps(dict)`` per message, as one expression over text columns.

    ``columns``: per item, the column holding its JSON value text (null: no value), prefixed
    with its key when its name is not repeated. The dict
    is filled in message order, skipping None values, so a key sits where its name first had
    a value and holds the last value: with a repeated name (a component expansion next to the
    real field, e.g. total_cycles), each occurrence gets a slot that is used only where it is
    the first occurrence with a value, and then holds the last value.
    """
    values = [pl.col(column) for column in columns]
    slots = []
    for i, name in enumerate(names):
        same = [j for j, other in enumerate(names) if other == name]
        if len(same) == 1:  # the column already holds '"name": value'
            slots.append(values[i])
            continue
        prefix = _json_key(name)
        last = pl.coalesce([values[j] for j in reversed(same)])
        first = values[i].is_not_null()
        for j in same:
            if j < i:
                first = first & values[j].is_null()
        slots.append(pl.when(first).then(pl.lit(prefix) + last))
    joined = pl.concat_str(slots, separator=", ", ignore_nulls=True)
    return pl.when(joined == "").then(None).otherwise("{" + joined + "}")


def _record_fields_of_layout(
    scan: _Scan,
    layout: _Layout,
    offsets: np.ndarray,
    dev_fields: tuple[tuple[Any, int], ...],
    accumulated: dict[int, np.ndarray],
) -> tuple[pl.Series, pl.Series] | None:
    """decode_fit's ``extra_json`` and ``developer_json`` for the messages of one layout."""
    from pipelines.fit.decode import _RECORD_TYPED  # lazy: decode.py may import this module

    extra, developer = [], []
    for item in _message_items(layout, dev_fields):
        if item.name not in _RECORD_TYPED:
            (developer if item.developer else extra).append(item)
    if not extra and not developer:
        return None
    texts: list[pl.Series] = []
    expressions = []
    for kind, items in (("extra_json", extra), ("developer_json", developer)):
        if not items:
            expressions.append(pl.lit(None, dtype=pl.String).alias(kind))
            continue
        columns = []
        names = [item.name for item in items]
        for item in items:
            target = accumulated.get(item.field.def_num) if item.component is not None else None
            distinct, inverse = _value_texts(scan, layout, offsets, item, target)
            if names.count(item.name) == 1:  # see _json_objects
                key = _json_key(item.name)
                distinct = [None if text is None else key + text for text in distinct]
            # per message text = distinct text gathered by index (an Arrow take: cheap)
            taken = pc.take(pa.array(distinct, type=pa.string()), pa.array(inverse))
            columns.append(f"t{len(texts)}")
            texts.append(pl.Series(columns[-1], taken))
        expressions.append(_json_objects(columns, names).alias(kind))
    frame = pl.DataFrame(texts).select(expressions)  # one pass per layout
    return frame["extra_json"], frame["developer_json"]


# --------------------------------------------------------------------------- records


@dataclass
class FastRecords:
    """The records frame plus what ``decode_fit`` counts on the side."""

    records: pl.DataFrame  # RECORD_SCHEMA, identical to decode_fit(data).records
    n_without_timestamp: int  # record messages skipped for lack of a timestamp
    damage: str | None  # set when fitdecode stops early: records are the ones before that
    scan: _Scan = field(repr=False)
    # decode_fit(data).record_fields (other record fields and developer fields as JSON),
    # when asked for
    record_fields: pl.DataFrame | None = None


def _open(raw: bytes) -> bytes:
    """decode_fit's own bounded open: gzip decompressed within MAX_FIT_BYTES, or FitUnusable
    with the same reason decode_fit gives."""
    from pipelines.fit.decode import _open as bounded_open  # lazy: decode.py imports us

    return bounded_open(raw)


def scan_records(data: bytes, *, record_fields: bool = False) -> FastRecords:
    """Decode the ``record`` messages of a FIT file (gzip accepted) without fitdecode.

    ``record_fields``: also build decode_fit's ``record_fields`` table (every other record
    field and the developer fields, as JSON text). Raises ``FastPathUnsupported`` for
    anything listed in the module docstring, and ``FitUnusable`` (as decode_fit) beyond the
    bounds of pipelines.fit.decode (file size, data messages).
    """
    from pipelines.fit.decode import MAX_FIT_MESSAGES, _too_many_messages  # lazy, as above

    scan = _scan(_open(data))
    if sum(scan.seg_count) > MAX_FIT_MESSAGES:  # fitdecode reads them all before it stops
        raise _too_many_messages()
    dev_fields = _developer_fields(scan)
    record_ids = [i for i, layout in enumerate(scan.layouts) if layout.global_num == MESG_RECORD]
    offsets, layout_of = scan.offsets(record_ids)
    accumulated = _accumulations(scan, record_ids, offsets, layout_of)
    leftovers: list[tuple[np.ndarray, pl.Series, pl.Series]] = []
    n = offsets.size
    seconds = np.zeros(n, dtype=np.int64)
    has_time = np.zeros(n, dtype=bool)
    columns = {name: np.full(n, np.nan) for name in _COLUMNS}
    compressed = (scan.buf[offsets] & 0x80) != 0 if n else np.zeros(0, dtype=bool)
    comp_offsets = comp_times = None
    if compressed.any():
        comp_offsets, comp_times = _compressed_timestamps(scan)

    for layout_id in record_ids:
        layout = scan.layouts[layout_id]
        rows = np.flatnonzero(layout_of == layout_id)
        if rows.size == 0:
            continue
        sources = _record_sources(layout)
        mine_accumulated = {target: values[rows] for target, values in accumulated.items()}
        if record_fields:
            found = _record_fields_of_layout(
                scan, layout, offsets[rows], dev_fields.get(layout_id, ()), mine_accumulated
            )
            if found is not None:
                leftovers.append((rows, *found))
        time_source = sources.get("timestamp")
        if time_source is None:  # only a compressed header can give these a time
            comp_rows = rows[compressed[rows]]
            if comp_rows.size:
                at = np.searchsorted(comp_offsets, offsets[comp_rows])
                seconds[comp_rows] = comp_times[at]
                has_time[comp_rows] = True
        if not sources:
            continue
        mine = _rows(scan, layout, offsets[rows], {src.index for src in sources.values()})
        if time_source is not None:
            if time_source.scale or time_source.offset or time_source.bits is not None:
                raise FastPathUnsupported("scaled record timestamp")
            values, valid, _ = _source_values(mine, layout, time_source, "timestamp")
            seconds[rows] = values.astype(np.int64)
            has_time[rows] = valid
        for column, names in _COLUMNS.items():
            out = columns[column]
            filled = np.zeros(rows.size, dtype=bool)
            for name in names:  # decode_fit's _value(): first name with a usable value
                source = sources.get(name)
                if source is None:
                    continue
                values, valid, is_int = _source_values(mine, layout, source, name, mine_accumulated)
                if column in _DEGREE_COLUMNS:
                    if not is_int:  # decode_fit's _degrees() wants an int
                        continue
                    values = values * SEMICIRCLE_TO_DEG
                take = valid & ~filled
                out[rows[take]] = values[take]
                filled |= valid

    # date_time processing: >= 0x10000000 is UTC, [0, 0x10000000) device-relative, < 0 unusable
    if np.any(has_time & (seconds >= 0) & (seconds < _RELATIVE_LIMIT)):
        raise FastPathUnsupported("device-relative record timestamps (need activity anchor)")
    keep = has_time & (seconds >= _RELATIVE_LIMIT)
    body_starts = np.array([section.body_start for section in scan.sections], dtype=np.int64)
    chain = np.searchsorted(body_starts, offsets, side="right") - 1
    frame = pl.DataFrame(  # Series by Series: several times faster than a dict of arrays
        [
            pl.Series("record_index", np.arange(int(keep.sum()), dtype=np.int64)),
            pl.Series("time_utc", (seconds[keep] + FIT_EPOCH_S) * 1000).cast(TS),
            *(pl.Series(c, values[keep], nan_to_null=True) for c, values in columns.items()),
            pl.Series("chain_index", chain[keep].astype(np.int64)),
        ]
    )
    fields_frame = None
    if record_fields:
        fields_frame = _record_fields_frame(leftovers, keep)
    return FastRecords(frame, int(n - keep.sum()), scan.damage, scan, fields_frame)


def _record_fields_frame(
    leftovers: list[tuple[np.ndarray, pl.Series, pl.Series]], keep: np.ndarray
) -> pl.DataFrame:
    """Rows of records decode_fit keeps (it numbers them) with any extra/developer field."""
    schema = {"record_index": pl.Int64(), "extra_json": pl.String(), "developer_json": pl.String()}
    if not leftovers:
        return pl.DataFrame(schema=schema)
    index = np.cumsum(keep) - 1
    frame = pl.concat(
        [
            pl.DataFrame(
                [
                    pl.Series("position", rows, dtype=pl.Int64),
                    extra.alias("extra_json"),
                    developer.alias("developer_json"),
                ]
            )
            for rows, extra, developer in leftovers
        ]
    ).sort("position")
    position = frame["position"].to_numpy()
    frame = frame.with_columns(
        pl.Series("record_index", index[position]), pl.Series("kept", keep[position])
    )
    frame = frame.filter(
        pl.col("kept")
        & (pl.col("extra_json").is_not_null() | pl.col("developer_json").is_not_null())
    )
    return frame.select(list(schema))


def decode_records_fast(data: bytes) -> pl.DataFrame | None:
    """``decode_fit(data).records``, vectorized; ``None`` when fitdecode must do it."""
    try:
        return scan_records(data).records
    except FastPathUnsupported:
        return None


# --------------------------------------------------------------------------- whole-file path


_DATEISH = frozenset({"date_time", "local_date_time", "localtime_into_day"})
MESG_HR = 132


def _dropped_message_hazards(scan: _Scan, dropped: list[int]) -> None:
    """Refuse files where fitdecode crashes on a message the rest stream leaves out.

    decode_fit reads every message, so a non-FitError crash in one it ignores (a date_time
    field holding a tuple, string or huge number; fitdecode's ``hr`` event_timestamp_12
    expansion without a start time) makes it fail. Cutting such a message out would turn that
    failure into a result: send those files to fitdecode whole instead.
    """
    present = set(scan.seg_layout)
    for layout_id in dropped:
        if layout_id not in present:
            continue
        layout = scan.layouts[layout_id]
        mesg = fit_profile.MESSAGE_TYPES.get(layout.global_num)
        if mesg is None:
            continue
        for def_num, size, base_type in layout.fields:
            profile_field = fit_profile.MESSAGE_TYPES[layout.global_num].fields.get(def_num)
            if profile_field is None:
                continue
            kinds = {
                getattr(f.type, "name", None)
                for f in (profile_field, *(profile_field.subfields or ()))
            }
            if not kinds & _DATEISH:
                continue
            base = _INT_BASES.get(base_type)
            unsigned_needed = "localtime_into_day" in kinds
            if base is None or base.size != size or (unsigned_needed and base.kind != "u"):
                raise FastPathUnsupported(f"{mesg.name}.{profile_field.name}: fitdecode may crash")
    if any(
        scan.layouts[i].global_num == MESG_HR and any(f[0] == 10 for f in scan.layouts[i].fields)
        for i in present
    ):
        _hr_hazards(scan)


def _hr_hazards(scan: _Scan) -> None:
    """fitdecode's hr.event_timestamp_12 expansion asserts a start time > 0 and adds to it.

    The start time is the last ``timestamp`` seen (any message, in field order) when an hr
    message's event_timestamp field was read; both restart at 0 in every FIT file.
    """
    offsets, layout_of = scan.offsets(sorted(set(scan.seg_layout)))
    keys, kinds, values = [], [], []  # kinds: 0 restart, 1 timestamp, 2 capture, 3 check
    for section in scan.sections:
        keys.append(np.array([section.body_start * 256 - 1]))
        kinds.append(np.array([0]))
        values.append(np.array([0]))
    for layout_id in sorted(set(scan.seg_layout)):
        layout = scan.layouts[layout_id]
        is_hr = layout.global_num == MESG_HR
        if any(f[0] == FIELD_TIMESTAMP for f in layout.dev_fields):
            raise FastPathUnsupported("developer field 253 next to hr event timestamps")
        wanted = {
            i
            for i, f in enumerate(layout.fields)
            if f[0] == FIELD_TIMESTAMP or (is_hr and f[0] in (9, 10))
        }
        if not wanted:
            continue
        mine = offsets[layout_of == layout_id]
        rows = _rows(scan, layout, mine, wanted)
        for i in sorted(wanted):
            def_num = layout.fields[i][0]
            column = rows[f"f{i}"]
            if def_num == 10:
                if column.ndim == 1 or np.any(np.all(column == 0xFF, axis=1)):
                    raise FastPathUnsupported("hr.event_timestamp_12 fitdecode cannot expand")
                kind, valid, value = 3, np.ones(mine.size, dtype=bool), np.zeros(mine.size)
            else:
                base = _int_field(layout, i, "timestamp next to hr event timestamps")
                valid = column != base.invalid
                if def_num == 9:
                    if any(f[0] == 10 for f in layout.fields) and not valid.all():
                        raise FastPathUnsupported("invalid hr.event_timestamp next to _12")
                    kind, valid = 2, np.ones(mine.size, dtype=bool)
                else:
                    kind = 1
                value = column.astype(np.int64)
            keys.append(mine[valid] * 256 + i)
            kinds.append(np.full(int(valid.sum()), kind))
            values.append(np.asarray(value)[valid])
    key = np.concatenate(keys)
    order = np.argsort(key, kind="stable")
    kind = np.concatenate(kinds)[order]
    value = np.concatenate(values)[order].astype(np.int64)
    index = np.arange(kind.size)
    last = value[np.maximum.accumulate(np.where(kind <= 1, index, 0))]
    start = np.where(kind == 2, last, 0)
    start = start[np.maximum.accumulate(np.where((kind == 0) | (kind == 2), index, 0))]
    if np.any(start[kind == 3] <= 0):
        raise FastPathUnsupported("hr.event_timestamp_12 without a start time: fitdecode asserts")


@dataclass
class RestStream:
    """A FIT stream holding only what ``decode_fit`` reads besides records."""

    data: bytes
    original_offset: dict[int, int]  # message offset in ``data`` -> offset in the source file


def rest_stream(scan: _Scan) -> RestStream:
    """The FIT stream with only definitions and the messages in ``REST_MESSAGES``.

    Every FIT file of the chain keeps its header (body size patched, header CRC recomputed)
    and gets a recomputed file CRC, so fitdecode reads it as a clean file; of a damaged file,
    only what fitdecode reads before its error is kept. Nothing fitdecode derives for the kept
    messages depends on the messages cut out, with one exception refused here: compressed
    timestamps (their accumulator is fed by every message).
    """
    ids = [i for i, layout in enumerate(scan.layouts) if layout.global_num in REST_MESSAGES]
    _dropped_message_hazards(scan, [i for i in range(len(scan.layouts)) if i not in ids])
    offsets, layout_of = scan.offsets(ids)
    if offsets.size and np.any(scan.buf[offsets] & 0x80):
        raise FastPathUnsupported("compressed timestamp on a non-record message")
    sizes = np.array([1 + layout.size for layout in scan.layouts], dtype=np.int64)
    items = [(int(o), int(s)) for o, s in zip(offsets, sizes[layout_of], strict=True)]
    items += [(o, length) for o, length, _ in scan.definitions]
    items.sort()
    data, out, mapping, written = scan.data, [], {}, 0
    starts = np.array([item[0] for item in items], dtype=np.int64)
    for section in scan.sections:
        lo = int(np.searchsorted(starts, section.body_start))
        hi = int(np.searchsorted(starts, section.body_end))
        at = written + section.header_size
        for offset, size in items[lo:hi]:
            mapping[at] = offset
            at += size
        body = b"".join(data[o : o + s] for o, s in items[lo:hi])
        header = bytearray(data[section.header_offset : section.body_start])
        header[4:8] = struct.pack("<I", len(body))
        if section.header_size == 14 and header[12:14] != b"\x00\x00":
            header[12:14] = struct.pack("<H", compute_crc(bytes(header[:12])))
        chunk = bytes(header) + body
        out.append(chunk + struct.pack("<H", _crc16(np.frombuffer(chunk, dtype=np.uint8))))
        written += len(chunk) + 2
    return RestStream(b"".join(out), mapping)


# fitdecode's warning texts name the offset of the message they are about in these two forms
_OFFSET_IN_TEXT = re.compile(r"(@ |chunk_offset: )(\d+)")


def _original_problem(problem: str, mapping: dict[int, int]) -> str | None:
    """A rest-stream warning text with the offsets of the source file, None if unmappable."""
    failed = False

    def swap(match: re.Match[str]) -> str:
        nonlocal failed
        original = mapping.get(int(match.group(2)))
        failed = failed or original is None
        return f"{match.group(1)}{original}"

    text = _OFFSET_IN_TEXT.sub(swap, problem)
    return None if failed else text


def decode_fit_fast(raw: bytes, slow: Callable[[bytes], FitDecoded] | None = None) -> FitDecoded:
    """Exactly ``slow(raw)`` (default: fitdecode's ``decode_fit``), records decoded here.

    fitdecode still decodes everything else decode_fit reads (file_id, sessions, laps,
    events, activity, device info, workouts, lengths, hrv, ...), but from the much smaller
    ``rest_stream``. Its warnings come from definitions and developer-data messages,
    all kept, so the first warning is the same as on the whole file; only the offsets in its
    text are mapped back. A damaged file gets the integrity class and problem text of the
    FitError fitdecode raises on it (reproduced by the scan; its warnings are then moot, as
    in decode_fit). Any doubt sends the whole file to ``slow``: fast path unsupported, the
    rest decode failing, a warning text that cannot be mapped, records in the rest, or a
    damaged file with neither records, sessions nor laps (decode_fit may reject it).
    """
    from pipelines.fit import decode as fitdecode_path  # lazy: decode.py may import us

    if slow is None:  # the plain fitdecode implementation, once decode_fit delegates here
        slow = getattr(fitdecode_path, "decode_fit_fitdecode", fitdecode_path.decode_fit)

    wants_fields = "record_fields" in {
        f.name for f in dataclasses.fields(fitdecode_path.FitDecoded)
    }
    try:
        fast = scan_records(raw, record_fields=wants_fields)
        rest = rest_stream(fast.scan)
    except FastPathUnsupported:
        return slow(raw)
    except fitdecode_path.FitUnusable:  # a bound of decode_fit: slow gives the same reason
        raise
    except Exception as exc:  # a bug here must never cost a file: fitdecode decides
        warnings.warn(
            f"fast FIT path failed ({exc!r}); using fitdecode", RuntimeWarning, stacklevel=2
        )
        return slow(raw)
    try:
        part = slow(rest.data)
    except Exception:  # the full decode reproduces (or explains) whatever happened
        return slow(raw)
    if part.integrity not in ("ok", "decoded_with_warnings") or part.records.height:
        return slow(raw)
    integrity, problem = part.integrity, part.problem
    if fast.scan.damage is not None:
        if not (fast.records.height or part.sessions.height or part.laps.height):
            return slow(raw)
        integrity, problem = fast.scan.damage_kind, fast.scan.damage
    elif problem is not None:
        problem = _original_problem(problem, rest.original_offset)
        if problem is None:
            return slow(raw)
    file = part.file.with_columns(
        pl.lit(fast.n_without_timestamp, dtype=pl.Int64).alias("n_records_without_timestamp"),
        pl.lit(integrity, dtype=pl.String).alias("integrity"),
        pl.lit(problem, dtype=pl.String).alias("problem"),
    )
    # every table from the rest decode, but the record-derived ones from here
    derived = {"records": fast.records}
    if wants_fields:
        if part.record_fields.height:
            return slow(raw)
        derived["record_fields"] = fast.record_fields
    return dataclasses.replace(
        part, file=file, integrity=integrity, problem=problem, decoder="fast", **derived
    )
