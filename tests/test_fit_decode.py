import gzip

import pytest

from pipelines.fit.decode import FitUnusable, decode_fit


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
