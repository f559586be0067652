"""`wearhouse import` streams every file with bounds checked on the bytes it produces."""

import io
import os
import tracemalloc
import zipfile

import pytest

from pipelines.fit import importer
from pipelines.fit.importer import import_fit


def zip_file(path, files: dict[str, bytes], compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def landed(landing):
    return sorted(p.name for p in (landing / "fit" / "u1" / "imported").iterdir())


def test_oversized_member_is_refused_and_nothing_partial_lands(tmp_path, fixtures, monkeypatch):
    monkeypatch.setattr(importer, "MAX_FIT_BYTES", 1 << 20)
    run = (fixtures / "fit" / "activity_1378220136.fit").read_bytes()
    export = zip_file(tmp_path / "e.zip", {"big.fit": os.urandom(3 << 20), "run.fit": run})
    report = import_fit(export, tmp_path / "landing", "u1")
    assert len(report.imported) == 1
    assert report.skipped == [f"{export}!big.fit: larger than the 1 MiB limit"]
    assert len(landed(tmp_path / "landing")) == 1  # no temporary file left behind


def test_zip_bomb_member_is_refused_by_ratio(tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "COMPRESSION_RATIO_FLOOR", 0)
    export = zip_file(tmp_path / "e.zip", {"bomb.fit": bytes(8 << 20)})
    report = import_fit(export, tmp_path / "landing", "u1")
    assert not report.imported
    assert "expands more than 200x" in report.skipped[0]


def test_member_header_lying_about_its_size(tmp_path, monkeypatch):
    """The central directory claims 16 bytes; the data is 2 MiB: never landed either way."""
    monkeypatch.setattr(importer, "MAX_FIT_BYTES", 1 << 20)
    data = os.urandom(2 << 20)
    raw = bytearray(zip_file(io.BytesIO(), {"liar.fit": data}).getvalue())
    size = len(data).to_bytes(4, "little")
    at = 0
    while (at := raw.find(size, at)) >= 0:  # local header and central directory copies
        raw[at : at + 4] = (16).to_bytes(4, "little")
    (tmp_path / "e.zip").write_bytes(raw)
    report = import_fit(tmp_path / "e.zip", tmp_path / "landing", "u1")
    assert not report.imported and len(report.skipped) == 1


def test_import_wide_bounds(tmp_path, fixtures, monkeypatch):
    run = (fixtures / "fit" / "activity_1378220136.fit").read_bytes()
    monkeypatch.setattr(importer, "MAX_ENTRIES", 3)
    many = zip_file(tmp_path / "many.zip", {f"{i}.fit": run[:-i] for i in range(1, 6)})
    report = import_fit(many, tmp_path / "landing", "u1")
    assert report.skipped == [f"{many}: zip refused: more than 3 entries"]

    monkeypatch.setattr(importer, "MAX_ENTRIES", 100)
    monkeypatch.setattr(importer, "MAX_TOTAL_BYTES", 2 * len(run))
    report = import_fit(many, tmp_path / "landing2", "u1")
    assert len(report.imported) == 2
    assert "import larger than the" in report.skipped[-1] and "stopped" in report.skipped[-1]

    monkeypatch.setattr(importer, "MAX_TOTAL_BYTES", 1 << 30)
    monkeypatch.setattr(importer, "MAX_FILES", 3)
    report = import_fit(many, tmp_path / "landing3", "u1")
    assert len(report.imported) == 3
    assert "more than 3 FIT files" in report.skipped[-1]


def test_members_are_streamed_not_read_whole(tmp_path):
    export = tmp_path / "e.zip"
    with (
        zipfile.ZipFile(export, "w", compression=zipfile.ZIP_STORED) as archive,
        archive.open("long.fit", "w") as member,
    ):
        for _ in range(40):
            member.write(os.urandom(1 << 20))
    tracemalloc.start()
    try:
        report = import_fit(export, tmp_path / "landing", "u1")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(report.imported) == 1
    assert peak < 8 << 20  # a few chunks, not the 40 MiB member


def test_oversized_loose_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "MAX_FIT_BYTES", 1 << 20)
    folder = tmp_path / "watch"
    folder.mkdir()
    (folder / "huge.fit").write_bytes(bytes(2 << 20))
    report = import_fit(folder, tmp_path / "landing", "u1")
    assert not report.imported and "larger than the 1 MiB limit" in report.skipped[0]


@pytest.mark.parametrize("payload", [b"PK\x05\x06" + bytes(18), b"PK garbage"])
def test_unreadable_archives_are_skipped(tmp_path, payload):
    (tmp_path / "bad.zip").write_bytes(payload)
    report = import_fit(tmp_path / "bad.zip", tmp_path / "landing", "u1")
    assert not report.imported and len(report.skipped) <= 1
