"""`wearhouse import`: folders and Garmin Connect export zips (nested), deduplicated."""

import io
import zipfile

import duckdb
import pytest

from pipelines.cli import main
from pipelines.fit.importer import ImportProblem, import_fit


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_export_zip_with_nested_zips_and_duplicates(tmp_path, fixtures, capsys):
    run = (fixtures / "fit" / "activity_1378220136.fit").read_bytes()
    ride = (fixtures / "fit" / "garmin-edge-500-activity.fit").read_bytes()
    uploads = zip_bytes({"UploadedFiles_0-Part1/run.fit": run, "ride.FIT": ride})
    export = tmp_path / "export.zip"
    export.write_bytes(
        zip_bytes(
            {
                "DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip": uploads,
                "DI_CONNECT/also-run.fit": run,  # the same activity twice
                "DI_CONNECT/broken.fit": b"not a fit file at all",
                "README.txt": b"ignored",
                "../../evil.fit": ride,  # names inside archives never become paths
            }
        )
    )
    home = tmp_path / "home"
    assert main(["import", str(export), "--user", "athlete-9", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "5 FIT files found, 3 imported, 2 duplicates, 1 quarantined" in out
    landed = sorted(p.name for p in (home / "landing" / "fit" / "athlete-9" / "imported").iterdir())
    assert len(landed) == 3 and not (tmp_path / "evil.fit").exists()
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM sessions").fetchall()[0][0] == 2
    # importing the same export again adds nothing
    assert main(["import", str(export), "--user", "athlete-9", "--home", str(home)]) == 0
    assert "0 imported, 5 duplicates" in capsys.readouterr().out


def test_folder_import_and_bad_user(tmp_path, fixtures):
    folder = tmp_path / "watch"
    folder.mkdir()
    (folder / "a.fit").write_bytes((fixtures / "fit" / "activity_1378220136.fit").read_bytes())
    report = import_fit(folder, tmp_path / "landing", "u1")
    assert len(report.imported) == 1
    with pytest.raises(ImportProblem, match="not usable as a folder name"):
        import_fit(folder, tmp_path / "landing", "../etc")
