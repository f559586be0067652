from pathlib import Path

from pipelines.settings import Settings


def test_defaults_live_under_home():
    s = Settings.resolve(environ={"WEARHOUSE_HOME": "/data/wh"})
    assert s.landing == Path("/data/wh/landing")
    assert s.lake == Path("/data/wh/lake")
    assert s.duckdb == Path("/data/wh/warehouse.duckdb")


def test_each_folder_can_be_overridden_by_env_and_by_argument():
    env = {"WEARHOUSE_HOME": "/h", "WEARHOUSE_LAKE": "/fast/lake", "WEARHOUSE_DUCKDB": "/w.db"}
    s = Settings.resolve(environ=env)
    assert (s.landing, s.lake, s.duckdb) == (Path("/h/landing"), Path("/fast/lake"), Path("/w.db"))
    s = Settings.resolve(landing="/in", environ=env)
    assert s.landing == Path("/in")
    # an explicit home takes everything under it unless a folder is given explicitly
    s = Settings.resolve(home="/other", duckdb="/x.db", environ=env)
    assert (s.lake, s.duckdb) == (Path("/other/lake"), Path("/x.db"))


def test_default_home_is_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.resolve(environ={})
    assert s.home == tmp_path / "wearhouse-home"
