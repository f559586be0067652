import gzip
import struct
import tracemalloc
import zlib

import pytest
from fitdecode.utils import compute_crc

from pipelines.fit import decode as decode_module
from pipelines.fit.decode import (
    DECODER_ENV,
    INTERNAL_ERROR_PREFIX,
    FitUnusable,
    decode_fit,
    read_fit_bytes,
)
from tests.fit_writer import UINT8, UINT16, UINT32, FitWriter

T0 = 1_000_000_000  # FIT seconds


def read(fixtures, name):
    return (fixtures / "fit" / name).read_bytes()


def test_device_lap_totals_and_local_offset(fixtures):
    decoded = decode_fit(read(fixtures, "activity_1378220136.fit"))
    assert decoded.integrity == "ok"
    assert decoded.sessions.height == 1 and decoded.laps.height == 7
    assert decoded.records.height == 614
    # the device's own totals: the ground truth the interval tests compare against
    assert decoded.laps["total_distance_m"][0] == pytest.approx(1609.35)
    assert decoded.sessions["total_distance_m"][0] == pytest.approx(10247.33)
    assert decoded.file["utc_offset_s"][0] == 3600  # activity.local_timestamp - timestamp
    assert decoded.records["lat_deg"].drop_nulls().is_between(-90, 90).all()


@pytest.mark.parametrize(
    ("name", "integrity"),
    [
        ("activity-filecrc.fit", "crc_mismatch"),
        ("activity-unexpected-eof.fit", "truncated"),
        ("activity-settings-corruptheader.fit", "corrupt_header"),
    ],
)
def test_damaged_files_keep_what_decoded(fixtures, name, integrity):
    decoded = decode_fit(read(fixtures, name))
    assert decoded.integrity == integrity
    assert decoded.records.height == 14 and decoded.sessions.height == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"", "empty file"), (b"hello, this is not a FIT file", "not a FIT file")],
)
def test_unusable_files_raise_with_reason(raw, reason):
    with pytest.raises(FitUnusable, match=reason):
        decode_fit(raw)


def test_gzipped_fit_decodes_like_the_original(fixtures):
    raw = read(fixtures, "activity_1378220136.fit")
    assert decode_fit(gzip.compress(raw)).records.equals(decode_fit(raw).records)


def test_device_relative_clock_is_anchored(fixtures):
    # FR70: no real-time clock, every record has a compressed timestamp relative to power-up
    decoded = decode_fit(read(fixtures, "compressed-speed-distance.fit"))
    assert decoded.records.height == 755
    assert decoded.file["time_base"][0] == "device_relative_anchored_local"
    assert decoded.records["time_utc"].dt.year().unique().to_list() == [2012]


def test_multisport_chained_file(fixtures):
    decoded = decode_fit(read(fixtures, "track_cs_1451.fit"))
    assert decoded.sessions["sport"].to_list() == [
        "swimming",
        "transition",
        "cycling",
        "transition",
        "running",
    ]


# --------------------------------------------------------------------------- hostile input


def both_decoders(monkeypatch, raw):
    """decode_fit with each decoder: (fitdecode result, fast-path result), or the exception."""
    results = []
    for decoder in ("fitdecode", "fast"):
        monkeypatch.setenv(DECODER_ENV, decoder)
        try:
            results.append(decode_fit(raw))
        except FitUnusable as exc:
            results.append(exc)
    return results


def same(a, b):
    if isinstance(a, Exception):
        return type(a) is type(b) and str(a) == str(b)
    return (a.integrity, a.problem) == (b.integrity, b.problem) and all(
        a.tables[k].equals(b.tables[k]) for k in a.tables
    )


def small_file(n=20):
    w = FitWriter()
    w.define(0, "file_id", ["type", "manufacturer", "time_created"]).write(0, 4, 1, T0)
    w.define(1, "record", ["timestamp", "heart_rate"])
    for i in range(n):
        w.write(1, T0 + i, 120 + i)
    return w


@pytest.mark.parametrize(
    ("field", "values", "expected"),
    [
        ((0, UINT16, 2), (812,), [0.812]),  # one interval: fitdecode gives a float, not a tuple
        ((0, UINT16, 10), ((800, None, 790, None, None),), [0.8, 0.79]),  # invalid entries
        ((0, UINT16, 2), (None,), []),
    ],
)
def test_hrv_time_scalar_or_with_invalid_entries(monkeypatch, field, values, expected):
    w = small_file(3)
    w.define(2, "hrv", [field]).write(2, *values)
    fitdecode_result, fast_result = both_decoders(monkeypatch, w.to_bytes())
    assert fitdecode_result.integrity == "ok"
    assert fitdecode_result.hrv["rr_s"].to_list() == expected
    assert same(fitdecode_result, fast_result)


def test_fitdecode_failing_mid_file_keeps_what_decoded(monkeypatch):
    # a zero-size field: fitdecode raises ValueError('size') reading the next record
    w = small_file(20).define(2, "record", [(3, UINT8, 0)]).write(2, b"")
    decoded, fast_result = both_decoders(monkeypatch, w.to_bytes())
    assert decoded.integrity == "corrupt_data" and decoded.records.height == 20
    assert "ValueError: size" in decoded.problem
    assert same(decoded, fast_result)


def test_date_time_fitdecode_cannot_convert_stays_unconverted(monkeypatch):
    # session.start_time as two uint32 values: fitdecode's processor fails on the tuple
    w = small_file(5)
    w.define(2, "session", ["timestamp", (2, UINT32, 8), "total_elapsed_time"])
    w.write(2, T0 + 5, (T0, T0), 5000)
    w.define(3, "record", ["timestamp", "heart_rate"]).write(3, T0 + 6, 99)
    decoded, fast_result = both_decoders(monkeypatch, w.to_bytes())
    assert decoded.integrity == "ok" and decoded.records.height == 6
    assert decoded.sessions["start_time_utc"].to_list() == [None]
    assert same(decoded, fast_result)


def test_header_claiming_gigabytes_is_damage_without_allocating(monkeypatch):
    raw = bytearray(small_file(20).to_bytes())
    raw[4:8] = struct.pack("<I", 2 << 30)  # 2 GiB of data claimed in a ~300 byte file
    raw[12:14] = struct.pack("<H", compute_crc(bytes(raw[:12])))
    tracemalloc.start()
    try:
        results = both_decoders(monkeypatch, bytes(raw))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the body runs on into the file CRC (read as a message header) and ends early: a reason
    assert results[0].integrity == "corrupt_data" and results[0].records.height == 20
    assert same(*results)
    assert peak < 64 << 20


def test_message_count_bound(monkeypatch, fixtures):
    monkeypatch.setattr(decode_module, "MAX_FIT_MESSAGES", 100)
    for result in both_decoders(monkeypatch, read(fixtures, "activity_1378220136.fit")):
        assert isinstance(result, FitUnusable) and "more than 100 data messages" in str(result)


def test_file_size_bound(monkeypatch, fixtures, tmp_path):
    raw = read(fixtures, "activity_1378220136.fit")
    monkeypatch.setattr(decode_module, "MAX_FIT_BYTES", len(raw) - 1)
    (tmp_path / "a.fit").write_bytes(raw)
    with pytest.raises(FitUnusable, match=r"exceeds the .* limit for a FIT file"):
        read_fit_bytes(tmp_path / "a.fit")
    for result in both_decoders(monkeypatch, raw):
        assert isinstance(result, FitUnusable) and "limit for a FIT file" in str(result)


def test_gzip_is_decompressed_within_bounds(monkeypatch, fixtures, tmp_path):
    raw = read(fixtures, "activity_1378220136.fit")
    (tmp_path / "a.fit.gz").write_bytes(gzip.compress(raw) + gzip.compress(b""))
    assert read_fit_bytes(tmp_path / "a.fit.gz") == raw
    (tmp_path / "a.fit").write_bytes(raw)
    assert read_fit_bytes(tmp_path / "a.fit") == raw

    # a bomb: 64 MiB of zeros in ~64 KiB, refused by ratio long before it is expanded
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = b"".join(bomb.compress(bytes(1 << 20)) for _ in range(64)) + bomb.flush()
    (tmp_path / "bomb.fit.gz").write_bytes(data)
    with pytest.raises(FitUnusable, match="decompression bomb"):
        read_fit_bytes(tmp_path / "bomb.fit.gz")
    with pytest.raises(FitUnusable, match="decompression bomb"):
        decode_fit(data)

    for broken in (gzip.compress(raw)[:-9], b"\x1f\x8b" + bytes(30)):
        with pytest.raises(FitUnusable, match="gzip could not be read"):
            decode_fit(broken)
    monkeypatch.setattr(decode_module, "MAX_FIT_BYTES", len(raw) - 1)
    with pytest.raises(FitUnusable, match="gzip expands beyond"):
        read_fit_bytes(tmp_path / "a.fit.gz")


def test_unexpected_exception_is_contained(monkeypatch, fixtures):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    raw = read(fixtures, "activity_1378220136.fit")
    monkeypatch.setattr(decode_module, "_frame", boom)
    for result in both_decoders(monkeypatch, raw):
        assert isinstance(result, FitUnusable)
        assert str(result) == f"{INTERNAL_ERROR_PREFIX}: RuntimeError: boom"
    monkeypatch.undo()
    monkeypatch.setattr(decode_module, "_summary_row", boom)  # while reading one message
    monkeypatch.setenv(DECODER_ENV, "fitdecode")
    decoded = decode_fit(raw)
    assert decoded.integrity == "decoder_error" and decoded.laps.height == 0
    assert decoded.problem.startswith(f"{INTERNAL_ERROR_PREFIX} @ ")
    assert decoded.records.height > 0  # the records before the first lap are kept
