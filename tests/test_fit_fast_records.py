"""Oracle tests: the vectorized record decoder against fitdecode (``decode_fit``).

Every file must either give exactly ``decode_fit(raw).records`` and ``.record_fields``
(exact: values are computed with the same IEEE operations as fitdecode, so no float tolerance
is needed anywhere) or be a declared fallback. ``decode_fit_fast`` must give exactly
``decode_fit(raw)``: every table, integrity and problem text.

Declared fallbacks (``FastPathUnsupported``, fitdecode decodes the file):

=============================  ============================================================
file                           why
=============================  ============================================================
antfs-dump.63.fit              device-relative timestamps (FR70 has no clock); anchoring
                               needs activity.local_timestamp
compressed-speed-distance.fit  device-relative timestamps too (same FR70); its accumulated
                               ``compressed_speed_distance`` alone would be handled
=============================  ============================================================

Damaged files are not fallbacks: the scan stops where fitdecode raises, keeps what it keeps
and reproduces decode_fit's integrity and problem text (``damage``): activity-filecrc,
activity-activity-filecrc, raw_run (CRC mismatch), activity-unexpected-eof,
activity-settings-nodata, nick (truncated), activity-settings-corruptheader (corrupt chained
header), strava-android-app-201.10-b1218918 (undefined local message).

The shared corpus (/work/shared/data/fit, or $WEARHOUSE_FIT_CORPUS) is used when present:
files up to 64 KB whole, larger ones through a 32 KB prefix (a truncated file: same code
paths, a fraction of fitdecode's time). ``WEARHOUSE_FIT_ORACLE=full`` checks the large
files whole too (~1 min).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from fitdecode.utils import compute_crc
from polars.testing import assert_frame_equal

from pipelines.fit import decode as decode_module
from pipelines.fit import fast_records
from pipelines.fit.decode import RECORD_SCHEMA, FitUnusable
from pipelines.fit.fast_records import (
    FastPathUnsupported,
    decode_fit_fast,
    decode_records_fast,
    scan_records,
)
from tests.fit_writer import (
    BYTE,
    FLOAT32,
    SINT8,
    STRING,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    FitWriter,
    activity_file,
    chain,
)

FIXTURES = Path(__file__).parent / "fixtures" / "fit"
SHARED = Path(os.environ.get("WEARHOUSE_FIT_CORPUS", "/work/shared/data/fit"))
FULL = os.environ.get("WEARHOUSE_FIT_ORACLE") == "full"
SMALL = 64_000
PREFIX = 32_000

FALLBACK = {
    "antfs-dump.63.fit": "device-relative",
    "compressed-speed-distance.fit": "device-relative",
}
DAMAGED = {
    "activity-filecrc.fit",
    "activity-activity-filecrc.fit",
    "raw_run.fit",
    "activity-unexpected-eof.fit",
    "activity-settings-nodata.fit",
    "nick.fit",
    "activity-settings-corruptheader.fit",
    "strava-android-app-201.10-b1218918.fit",
}
T0 = 1_000_000_000  # a FIT timestamp (2021-09-08)

# The oracle is the plain fitdecode path; should decode_fit itself delegate to the fast path,
# that path is expected under the name decode_fit_fitdecode.
decode_fit = getattr(decode_module, "decode_fit_fitdecode", decode_module.decode_fit)

# decode_fit_fast survives its own bugs by warning and using fitdecode: here, they must fail
pytestmark = pytest.mark.filterwarnings("error:fast FIT path failed:RuntimeWarning")


def assert_same_decode(got, ref) -> None:
    for name, table in ref.tables.items():
        assert_frame_equal(got.tables[name], table, check_exact=True)
    assert (got.integrity, got.problem) == (ref.integrity, ref.problem)


def whole_file_decode(raw: bytes):
    """decode_fit_fast(raw), and whether it had to give the whole file to fitdecode."""
    whole = []

    def slow(data: bytes):
        whole.append(data is raw)
        return decode_fit(data)

    return decode_fit_fast(raw, slow), any(whole)


def check(raw: bytes, *, damaged: bool = False, full: bool = True, rest: bool = True):
    """The oracle: fast records == decode_fit records; decode_fit_fast == decode_fit.

    ``rest``: decode_fit_fast is expected to use fitdecode on the rest stream only.
    """
    ref = decode_fit(raw)
    fast = scan_records(raw, record_fields=True)
    assert_frame_equal(fast.records, ref.records, check_exact=True)
    assert_frame_equal(fast.record_fields, ref.record_fields, check_exact=True)
    assert fast.n_without_timestamp == ref.file["n_records_without_timestamp"][0]
    assert (fast.damage is not None) == damaged, fast.damage
    if full:
        got, whole = whole_file_decode(raw)
        assert_same_decode(got, ref)
        assert whole == (not rest)
    return fast, ref


def check_fallback(raw: bytes, reason: str) -> None:
    with pytest.raises(FastPathUnsupported, match=reason):
        scan_records(raw)
    assert decode_records_fast(raw) is None
    got, whole = whole_file_decode(raw)
    assert_same_decode(got, decode_fit(raw))
    assert whole


def check_real_file(path: Path, *, prefix: int | None = None) -> None:
    raw = path.read_bytes()
    if prefix is not None and len(raw) > prefix:
        raw = raw[:prefix]
        if path.name in FALLBACK:
            with pytest.raises(FastPathUnsupported):
                scan_records(raw)
            return
        try:
            check(raw, damaged=True, full=False)
        except FitUnusable:
            pytest.skip("the prefix holds nothing fitdecode can use")
    elif path.name in FALLBACK:
        check_fallback(raw, FALLBACK[path.name])
    else:
        check(raw, damaged=path.name in DAMAGED)


# --------------------------------------------------------------------------- real files


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.fit")))
def test_fixture_files(name):
    check_real_file(FIXTURES / name)


def _shared_files() -> list:
    if not SHARED.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason="/work/shared absent"))]
    names = sorted(p.name for p in SHARED.glob("*.fit"))
    fixtures = {p.name: p for p in FIXTURES.glob("*.fit")}
    return [  # the copies in tests/fixtures are checked whole above
        n
        for n in names
        if n not in fixtures or fixtures[n].read_bytes() != (SHARED / n).read_bytes()
    ]


@pytest.mark.parametrize("name", _shared_files())
def test_shared_corpus(name):
    path = SHARED / name
    big = path.stat().st_size > SMALL
    check_real_file(path, prefix=PREFIX if big and not FULL else None)


# --------------------------------------------------------------------------- building blocks


def test_record_schema_matches_decode_fit():
    assert fast_records.RECORD_SCHEMA == RECORD_SCHEMA


@pytest.mark.parametrize("n", [1, 63, 255, 256, 257, 4097, 70_001])
def test_crc16_matches_fitdecode(n):
    block = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    assert fast_records._crc16(block) == compute_crc(block.tobytes())


# --------------------------------------------------------------------------- generated files

BASIC = ["timestamp", "position_lat", "position_long", "distance", "speed", "heart_rate"]


def basic_file(n: int = 50, **writer) -> FitWriter:
    w = FitWriter(**writer)
    w.define(0, "file_id", ["type", "manufacturer", "time_created"]).write(0, 4, 1, T0)
    w.define(1, "record", BASIC)
    for i in range(n):
        w.write(1, T0 + i, 500_000_000 + i, 100_000_000 - i, 100 * i, 3000 + i, 120 + i % 50)
    return w


def test_generated_activity_file():
    fast, _ = check(activity_file(900, lap_every=120))
    assert fast.records.height == 900


def test_gzip_input():
    raw = basic_file().to_bytes()
    assert_frame_equal(decode_records_fast(gzip.compress(raw)), decode_fit(raw).records)


def test_file_without_records_and_twelve_byte_header():
    w = FitWriter(header_size=12)
    w.define(0, "file_id", ["type", "manufacturer", "time_created"]).write(0, 4, 1, T0)
    fast, _ = check(w.to_bytes())
    assert fast.records.height == 0


def test_header_without_crc():
    check(basic_file(header_crc=False).to_bytes())


def test_big_endian_and_interleaved_layouts_keep_file_order():
    w = basic_file(5)
    w.define(2, "record", ["timestamp", "heart_rate", "enhanced_altitude"], big_endian=True)
    w.define(3, "record", ["heart_rate", "timestamp", "power", "temperature"])
    for i in range(5, 40):
        if i % 3 == 0:
            w.write(2, T0 + i, 100 + i, 2500 + 3 * i)
        elif i % 3 == 1:
            w.write(3, 90 + i, T0 + i, 150 + i, -5 + i % 10)
        else:
            w.write(1, T0 + i, None, None, None, None, None)
    # redefine local 1 mid-file with another layout
    w.define(1, "record", ["power", "timestamp", "cadence"], big_endian=True)
    for i in range(40, 60):
        w.write(1, 300 + i, T0 + i, 80 + i % 5)
    fast, _ = check(w.to_bytes())
    assert fast.records["time_utc"].is_sorted()


def test_invalid_values_quirks_and_component_expansion():
    w = FitWriter()
    w.define(0, "file_id", ["type", "time_created"]).write(0, 4, T0)
    # speed before enhanced_speed: fitdecode's first 'enhanced_speed' is speed's expansion,
    # so an invalid speed hides a valid enhanced_speed (decode_fit yields null there)
    w.define(1, "record", ["timestamp", "speed", "enhanced_speed", "altitude", "temperature"])
    w.write(1, T0, None, 4000, None, -12)
    w.write(1, T0 + 1, 3500, None, 2600, None)
    # enhanced_speed first: it wins; altitude alone expands to enhanced_altitude
    w.define(1, "record", ["timestamp", "enhanced_speed", "speed", "altitude", "cadence"])
    w.write(1, T0 + 2, None, 3000, 2700, 90)
    w.write(1, T0 + 3, 4200, 3000, None, None)
    # records without a usable timestamp are skipped and counted
    w.write(1, None, 4200, 3000, 2700, 90)
    w.define(2, "record", ["heart_rate", "power"]).write(2, 150, 200)
    # uint8z / uint16z invalid is 0; a signed timestamp below zero is unusable
    w.define(3, "record", [(253, 0x85, 4), (3, 0x0A, 1), (7, 0x8B, 2)])
    w.write(3, T0 + 4, 0, 0).write(3, T0 + 5, 140, 210).write(3, -5, 140, 210)
    fast, ref = check(w.to_bytes())
    assert ref.records["speed_mps"].to_list() == [None, 3.5, 3.0, 4.2, None, None]
    assert fast.n_without_timestamp == 3


def test_odd_field_sizes_and_arrays():
    w = FitWriter()
    w.define(0, "file_id", ["type", "time_created"]).write(0, 4, T0)
    # heart_rate as a 2-value array (a tuple in fitdecode: null); speed with 3 bytes for a
    # uint16 (invalid size: fitdecode warns, reads bytes, still expands enhanced_speed)
    w.define(1, "record", ["timestamp", (3, UINT8, 2), (6, UINT16, 3), (7, BYTE, 2)])
    for i in range(10):
        w.write(1, T0 + i, (120, 121), bytes([i, 0x10, 0]), bytes([1, 2]))
    _fast, ref = check(w.to_bytes())
    assert ref.integrity == "decoded_with_warnings"  # decode_fit_fast maps its offset back
    assert ref.records["hr_bpm"].null_count() == 10
    assert ref.records["speed_mps"].null_count() == 0


def test_compressed_timestamps_roll_over_and_follow_other_messages():
    w = FitWriter()
    w.define(0, "file_id", ["type", "time_created"]).write(0, 4, T0)
    w.define(1, "record", ["timestamp", "heart_rate"])
    w.define(2, "record", ["heart_rate", "distance"])  # no timestamp field
    w.define(3, "event", ["timestamp", "event", "event_type"])
    w.write(1, T0 + 3, 100)
    t = T0 + 3
    for step in [1, 1, 7, 13, 31, 2, 30, 1]:  # crosses several 32-s boundaries
        t += step
        w.write(2, 120, 1000 * step, compressed=t & 0x1F)
    t += 100
    w.write(3, t, 0, 0)  # any message's timestamp resets the accumulator
    for _ in range(40):
        t += 5
        w.write(2, 130, 500, compressed=t & 0x1F)
    # a compressed header on a layout with its own timestamp: the field wins
    w.write(1, t + 1000, 140, compressed=(t + 3) & 0x1F)
    w.write(2, 150, 1, compressed=(t + 1001) & 0x1F)
    # an invalid timestamp field does not move the accumulator, nor give a time
    w.write(1, None, 141, compressed=(t + 1002) & 0x1F)
    fast, _ = check(w.to_bytes())
    assert fast.n_without_timestamp == 1
    assert fast.scan.compressed


def test_compressed_timestamp_on_a_lap_goes_to_fitdecode_whole():
    w = basic_file(5)
    w.define(2, "lap", ["total_elapsed_time"]).write(2, 5000, compressed=(T0 + 5) & 0x1F)
    raw = w.to_bytes()
    check(raw, rest=False)  # records fine; the lap's time needs the records: fitdecode whole
    with pytest.raises(FastPathUnsupported, match="non-record"):
        fast_records.rest_stream(scan_records(raw).scan)


def test_chained_files_reset_the_accumulator():
    def part(start: int, header_size: int) -> bytes:
        w = FitWriter(header_size=header_size)
        w.define(0, "file_id", ["type", "time_created"]).write(0, 4, start)
        w.define(1, "record", ["timestamp", "power"]).write(1, start, 100)
        w.define(2, "record", ["power"])
        for i in range(1, 20):
            w.write(2, 100 + i, compressed=(start + 3 * i) & 0x1F)
        return w.to_bytes()

    fast, _ = check(chain(part(T0, 14), part(T0 + 10_000, 12), part(T0 + 20_017, 14)))
    assert fast.records.height == 60


def test_developer_fields_are_skipped_unless_they_could_matter():
    def dev_file(name: str, size: int = 2) -> bytes:
        w = FitWriter()
        w.define(0, "file_id", ["type", "time_created"]).write(0, 4, T0)
        w.developer_data_id(1, 0).field_description(1, 0, 7, UINT16, name)
        w.define(2, "record", ["timestamp", "heart_rate"], dev_fields=((7, size, 0, UINT16),))
        for i in range(30):
            w.write(2, T0 + i, 100 + i, 250 + i if size == 2 else bytes(size))
        return w.to_bytes()

    fast, _ = check(dev_file("Power"))
    assert fast.records["power_w"].null_count() == 30  # a developer 'Power' is not 'power'
    check_fallback(dev_file("power"), "developer field named like a record field")
    check_fallback(dev_file("Power", size=3), "not a multiple")


def test_developer_field_without_description_only_warns():
    w = basic_file(3)
    w.define(2, "record", ["timestamp", "cadence"], dev_fields=((0, 1, 5, UINT8),))
    w.write(2, T0 + 10, 80, 1)
    _, ref = check(w.to_bytes())
    assert ref.integrity == "decoded_with_warnings"


@pytest.mark.parametrize(
    ("fields", "values", "reason"),
    [
        (["timestamp", (3, FLOAT32, 4)], (T0, 1.5), "tuple or float"),
        (["timestamp", (7, UINT64, 8)], (T0, 5), "tuple or float"),
        (["timestamp", "compressed_speed_distance"], (T0, bytes([1])), "component of a"),
        (["timestamp", (3, STRING, 4)], (T0, "abc"), "tuple or float"),
    ],
)
def test_unsupported_field_types_fall_back(fields, values, reason):
    w = basic_file(2)
    w.define(2, "record", fields).write(2, *values)
    check_fallback(w.to_bytes(), reason)


def test_compressed_speed_distance_behind_plain_fields_is_fine():
    w = basic_file(2)
    w.define(2, "record", ["timestamp", "distance", "enhanced_speed", (8, BYTE, 3), (13, SINT8, 1)])
    w.write(2, T0 + 5, 1000, None, bytes([0x10, 0x20, 0x30]), -3)  # speed from the bytes
    w.write(2, T0 + 6, 1100, None, b"\xff\xff\xff", 4)  # all 0xff: invalid
    check(w.to_bytes())


def test_device_relative_timestamps_fall_back():
    w = FitWriter()
    w.define(0, "file_id", ["type"]).write(0, 4)
    w.define(1, "record", ["timestamp", "heart_rate"]).write(1, 1234, 100)
    w.define(2, "activity", ["timestamp", "local_timestamp"]).write(2, 1300, T0)
    check_fallback(w.to_bytes(), "device-relative")


def test_zero_size_field_falls_back():
    raw = basic_file(2).define(2, "record", [(3, UINT8, 0)]).to_bytes()
    with pytest.raises(FastPathUnsupported, match="zero-size"):
        scan_records(raw)


# --------------------------------------------------------------------------- damaged files


def damaged_variants() -> dict[str, bytes]:
    good = basic_file(30).to_bytes()
    second = basic_file(10, header_size=12).to_bytes()
    undefined = basic_file(10).raw(bytes([0x05])).raw(bytes(20)).to_bytes()
    return {
        "crc mismatch": basic_file(30).to_bytes(crc=0x1234),
        "crc mismatch in 2nd file": chain(good, basic_file(10).to_bytes(crc=1)),
        "cut inside a record": good[:-30],
        "cut before the CRC": good[:-2],
        "cut in the 2nd header": chain(good, second[:8]),
        "garbage after the file": good + b"\x00\x01\x02",
        "not FIT after the file": good + b"\x0e" * 14,
        "undefined local message": undefined,
    }


@pytest.mark.parametrize(("case", "raw"), list(damaged_variants().items()))
def test_damaged_files_keep_what_fitdecode_keeps(case, raw):
    _fast, ref = check(raw, damaged=True)
    assert ref.integrity != "ok"


def test_message_crossing_into_the_crc_falls_back():
    w = basic_file(3)
    w.body = w.body[:-1]  # the last record now ends inside the CRC
    with pytest.raises(FastPathUnsupported, match="crosses the end"):
        scan_records(w.to_bytes())


# --------------------------------------------------------------------------- the header walk


def test_walk_predicts_repeating_patterns():
    w = basic_file(0)
    w.define(2, "hrv", [(0, UINT16, 4)])
    w.define(3, "event", ["timestamp", "event", "event_type"])
    n = 0
    for i in range(600):  # record+hrv, then record+hrv+hrv
        w.write(1, T0 + i, None, None, 10 * i, 3000, 120)
        w.write(2, (800, 810))
        n += 2
        if i >= 300:
            w.write(2, (790, 800))
            n += 1
        if i % 200 == 199:
            w.write(3, T0 + i, 0, 0)
            n += 1
    fast, _ = check(w.to_bytes())
    assert fast.records.height == 600
    assert fast.scan.walked_messages < n / 20


def test_long_file_is_mostly_predicted():
    raw = activity_file(2000, lap_every=500)
    fast = scan_records(raw)
    assert fast.records.height == 2000
    assert fast.scan.walked_messages < 60


def test_uint32_timestamps_and_fit_epoch():
    w = basic_file(1)
    w.define(2, "record", ["timestamp"]).write(2, 0xFFFFFFFE)
    fast, ref = check(w.to_bytes())
    assert ref.records["time_utc"][1].year == 2126
    assert fast.records["record_index"].to_list() == [0, 1]


def test_unused_fields_of_any_type_are_skipped():
    fields = ["timestamp", (70, UINT64, 8), (71, FLOAT32, 4), (72, STRING, 5), "heart_rate"]
    w = basic_file(1)
    w.define(2, "record", fields)
    for i in range(5):
        w.write(2, T0 + 10 + i, 2**40, 1.5, "abc", 150)
    w.define(3, 0xFF00, [(1, UINT32, 4)]).write(3, 7)  # a manufacturer-specific message
    check(w.to_bytes())


# --------------------------------------------------------------------------- mutations


def mutation_base() -> bytes:
    w = FitWriter()
    w.define(0, "file_id", ["type", "manufacturer", "time_created"]).write(0, 4, 1, T0)
    w.developer_data_id(1, 0).field_description(1, 0, 7, UINT16, "Power")
    fields = ["timestamp", "position_lat", "distance", "speed", "heart_rate", "altitude"]
    w.define(1, "record", fields, dev_fields=((7, 2, 0, UINT16),))
    w.define(2, "record", ["heart_rate", "power"])
    w.define(3, "lap", ["timestamp", "start_time", "total_elapsed_time"])
    t = T0
    for i in range(40):
        t += 1
        if i % 4 == 0:
            w.write(1, t, 5000 + i, 100 * i, 3000 + i, 120, 2500, 200)
        else:
            w.write(2, 120 + i, 150, compressed=t & 0x1F)
        if i % 20 == 19:
            w.write(3, t, t - 20, 20000)
    return w.to_bytes()


@pytest.mark.parametrize("seed", range(40))
def test_mutated_files_agree_with_fitdecode(seed):
    """Random byte changes, cuts and shifts: whatever fitdecode makes of them, so do we."""
    rng = np.random.default_rng(seed)
    raw = bytearray(mutation_base())
    kind = seed % 4
    at = int(rng.integers(14, len(raw)))
    if kind == 0:
        raw[at] = int(rng.integers(0, 256))
    elif kind == 1:
        raw = raw[:at]
    elif kind == 2:
        del raw[at]
    else:
        raw.insert(at, int(rng.integers(0, 256)))
    raw = bytes(raw)
    try:
        ref = decode_fit(raw)
    except FitUnusable:
        with pytest.raises(FitUnusable):
            decode_fit_fast(raw)
        return
    except Exception as exc:  # fitdecode crashed: decode_fit_fast must crash alike
        with pytest.raises(type(exc)):
            decode_fit_fast(raw)
        return
    assert_same_decode(decode_fit_fast(raw), ref)
    try:
        fast = scan_records(raw)
    except FastPathUnsupported:
        return
    assert_frame_equal(fast.records, ref.records, check_exact=True)


# --------------------------------------------------------------------------- record_fields


def test_accumulated_distance_rolls_over_and_restarts_with_definitions():
    w = basic_file(2)
    fields = ["timestamp", (8, BYTE, 3), "heart_rate"]  # compressed_speed_distance
    w.define(2, "record", fields)
    distance = 0
    for i in range(200):  # 12-bit distance in 1/16 m: wraps every 256 m
        distance += 37 * 16 + i
        speed = 300 + i
        packed = speed | ((distance & 0xFFF) << 12)
        w.write(2, T0 + 10 + i, packed.to_bytes(3, "little"), 130)
        if i == 120:  # a new definition restarts fitdecode's running total
            w.define(2, "record", fields)
    w.write(2, T0 + 500, b"\xff\xff\xff", 131)  # invalid: no value, total unchanged
    _, ref = check(w.to_bytes())
    assert ref.records["distance_m"].drop_nulls().max() > 256


def test_extra_and_developer_fields_become_the_same_json():
    w = FitWriter()
    w.define(0, "file_id", ["type", "time_created"]).write(0, 4, T0)
    w.developer_data_id(1, 0)
    w.field_description(1, 0, 0, FLOAT32, "Leg Spring Stiffness")
    w.field_description(1, 0, 1, STRING, "Note ü")
    w.field_description(1, 0, 2, UINT16, "Form Power")
    fields = [
        "timestamp",
        "heart_rate",
        "activity_type",  # enum: a name, or the number when unknown
        "vertical_oscillation",  # scaled
        "fractional_cadence",
        (69, UINT8, 2),  # left_power_phase: an array, scaled per element
        "cycles",  # accumulates into total_cycles, which is also a real field below
        "total_cycles",
        "respiration_rate",  # expands to enhanced_respiration_rate, also real below
        "enhanced_respiration_rate",
        (120, UINT8, 1),  # not in the profile: left out
        (44, BYTE, 2),  # right_torque_effectiveness as bytes: a list
    ]
    dev = ((0, 4, 0, FLOAT32), (1, 8, 0, STRING), (2, 2, 0, UINT16), (9, 1, 0, UINT8))
    w.define(2, "record", fields, dev_fields=dev)
    for i in range(60):
        w.write(
            2,
            T0 + i,
            120 + i % 7,
            [1, 0, 99, None][i % 4],
            None if i % 5 == 0 else 800 + 3 * i,
            i % 128,
            (i % 200, None) if i % 3 else None,
            None if i % 6 == 0 else i % 256,
            None if i % 4 == 1 else 1000 + i,
            None if i % 7 == 0 else 14 + i % 3,
            None if i % 2 else 1400 + i,
            7,
            bytes([i % 256, 0xFF]),
            [9.75, float("nan"), 1e-7 * i, 3.4e38][i % 4],
            ["a\\b", "", 'ü"q', "longer than 8"][i % 4][:8],
            None if i % 9 == 0 else 200 + i,
            i % 3,  # an undescribed developer field: unnamed byte, key "null"
        )
    w.define(3, "record", ["timestamp", "power"])  # nothing extra: no row
    w.write(3, T0 + 100, 250)
    _, ref = check(w.to_bytes())
    assert ref.integrity == "decoded_with_warnings"  # the undescribed developer field
    assert ref.record_fields.height == 60


def test_rest_stream_keeps_every_message_decode_fit_reads():
    """decode_fit_fast hands fitdecode only these messages: all decode_fit looks at."""
    import inspect
    import re

    source = inspect.getsource(decode_module.decode_fit)
    read = set(re.findall(r'name == "(\w+)"', source))
    read |= set(getattr(decode_module, "_GENERIC", {}))
    assert read - {"record"} <= fast_records.REST_MESSAGE_NAMES
