"""One bad input never stops the pipeline: an unexpected exception in any stage quarantines that
input alone; landing is trusted only for the regular files inside it; plans are bounded before
they are expanded."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.cli import run_pipeline
from pipelines.fit import ingest as fit_ingest
from pipelines.garmin import ingest as garmin_ingest
from pipelines.lake.ledger import register_landing
from pipelines.plans import ingest as plans_ingest
from pipelines.plans.model import PlanError, frames
from pipelines.plans.native import parse_native_plan
from tests.conftest import land


def query(settings, sql):
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        return con.execute(sql).fetchall()


def reasons(settings) -> dict[str, str]:
    rows = query(settings, "SELECT input_path, stage, reason FROM quarantine")
    return {path: f"[{stage}] {reason}" for path, stage, reason in rows}


PLAN = """
plan: p
sessions:
  - date: 2026-03-03
    intervals:
      - {kind: warmup, duration: 10min}
      - {kind: work, distance: 400m, pace: "4:00/km"}
"""


def land_good_and_bad(settings, fixtures) -> None:
    activities = (fixtures / "garmin" / "openwearables_push_activities.json").read_bytes()
    fit = (fixtures / "fit" / "activity_1378220136.fit").read_bytes()
    land(settings, "garmin/push/good.json", activities)
    land(settings, "garmin/push/boom.json", activities.replace(b"{", b"{ ", 1))
    land(settings, "fit/runner-1/good.fit", fit)
    land(settings, "fit/runner-1/boom.fit", fit + b"\0")  # other bytes: another input
    land(settings, "plans/runner-1/good.yaml", PLAN)
    land(settings, "plans/runner-1/boom.yaml", PLAN + "\n")


def test_an_unexpected_exception_in_each_stage_quarantines_only_that_input(
    settings, fixtures, monkeypatch
):
    land_good_and_bad(settings, fixtures)

    def failing(real, marker):
        def wrapper(*args, **kwargs):
            # Each stage hands its parser the input's bytes: fail for the marked one alone.
            raw = next(a for a in args if isinstance(a, bytes))
            if marker(raw):
                raise KeyError("injected failure")
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        garmin_ingest,
        "parse_push",
        failing(garmin_ingest.parse_push, lambda raw: raw.startswith(b"{ ")),
    )
    monkeypatch.setattr(
        fit_ingest, "decode_fit", failing(fit_ingest.decode_fit, lambda raw: raw.endswith(b"\0"))
    )
    monkeypatch.setattr(
        plans_ingest, "_parse", failing(plans_ingest._parse, lambda raw: raw.endswith(b"\n\n"))
    )

    assert run_pipeline(settings, out=io.StringIO())

    found = reasons(settings)
    for path, stage in (
        ("garmin/push/boom.json", "garmin_push"),
        ("fit/runner-1/boom.fit", "fit"),
        ("plans/runner-1/boom.yaml", "plans"),
    ):
        assert found[path] == f"[{stage}] unexpected KeyError: 'injected failure'"
    assert not {p for p in found if "good" in p}
    sources = {r[0] for r in query(settings, "SELECT DISTINCT source FROM sessions")}
    assert sources == {"garmin_api", "fit"}
    assert query(settings, "SELECT count(*) FROM planned_sessions")[0][0] == 1

    # The next run does not stop on them again, and nothing is re-done.
    assert run_pipeline(settings, out=io.StringIO())
    assert reasons(settings) == found


def test_a_file_removed_from_landing_is_withdrawn_not_a_failing_run(settings, fixtures):
    from pipelines.lake.layout import LakeLayout

    fit = (fixtures / "fit" / "activity_1378220136.fit").read_bytes()
    kept = land(settings, "fit/runner-1/kept.fit", fit)
    gone = land(settings, "fit/runner-1/gone.fit", fit + b"\0")
    register_landing(settings.landing, LakeLayout(settings.lake))
    gone.unlink()  # registered, then removed before any stage read it

    assert run_pipeline(settings, out=io.StringIO())
    assert "withdrawn" in reasons(settings)["fit/runner-1/gone.fit"]
    assert query(settings, "SELECT count(*) FROM sessions")[0][0] == 1

    # An ingested file removed later keeps its rows: the lake is the record (erasure is how
    # data is removed); the run goes on.
    kept.unlink()
    assert run_pipeline(settings, out=io.StringIO())
    assert query(settings, "SELECT count(*) FROM sessions")[0][0] == 1


def test_a_file_replaced_in_place_before_ingest_is_a_new_input(settings, fixtures):
    from pipelines.lake.layout import LakeLayout

    path = land(settings, "garmin/push/a.json", '{"dailies": []}')
    register_landing(settings.landing, LakeLayout(settings.lake))
    path.write_bytes((fixtures / "garmin" / "openwearables_push_activities.json").read_bytes())
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))

    assert run_pipeline(settings, out=io.StringIO())
    assert "replaced" in reasons(settings)["garmin/push/a.json"]
    assert query(settings, "SELECT count(*) FROM sessions")[0][0] == 1


def test_links_and_special_files_in_landing_are_refused_never_read(settings, fixtures, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "run.fit").write_bytes((fixtures / "fit" / "activity_1378220136.fit").read_bytes())
    (settings.landing / "fit" / "runner-1").mkdir(parents=True)
    (settings.landing / "garmin" / "push").mkdir(parents=True)
    os.symlink(outside / "run.fit", settings.landing / "fit" / "runner-1" / "linked.fit")
    os.symlink(outside, settings.landing / "fit" / "runner-2")  # a linked user folder
    os.symlink("/etc/passwd", settings.landing / "garmin" / "push" / "passwd.json")
    os.mkfifo(settings.landing / "garmin" / "push" / "fifo.json")  # opening it would block

    assert run_pipeline(settings, out=io.StringIO())

    found = reasons(settings)
    assert "symbolic link" in found["fit/runner-1/linked.fit"]
    assert "symbolic link" in found["fit/runner-2"]
    assert "symbolic link" in found["garmin/push/passwd.json"]
    assert "not a regular file" in found["garmin/push/fifo.json"]
    assert all(r.startswith("[ledger]") for r in found.values())
    assert query(settings, "SELECT count(*) FROM sessions")[0][0] == 0
    passwd = Path("/etc/passwd").read_bytes().splitlines()[0]
    for path in settings.lake.rglob("*"):
        assert not path.is_file() or passwd not in path.read_bytes(), path


# --- plans: bounded before expanded --------------------------------------------------------


def plan_with(intervals: list) -> bytes:
    return json.dumps({"sessions": [{"date": "2026-03-03", "intervals": intervals}]}).encode()


def test_nested_repeats_are_bounded_before_they_are_expanded():
    step = {"kind": "work", "duration": "1s"}
    for _ in range(4):  # 100^5 = 10^10 steps once unrolled
        step = {"repeat": 100, "intervals": [step]}
    started = time.perf_counter()
    with pytest.raises(PlanError, match="more than 500 steps"):
        frames("u", parse_native_plan(plan_with([step]), "bomb.json", "u"))
    assert time.perf_counter() - started < 1.0

    deep = {"kind": "work", "duration": "1s"}
    for _ in range(6):
        deep = {"repeat": 1, "intervals": [deep]}
    with pytest.raises(PlanError, match="nested deeper"):
        frames("u", parse_native_plan(plan_with([deep]), "deep.json", "u"))


def test_many_step_definitions_are_a_reason_not_a_crash():
    steps = [{"kind": "work", "duration": "1s"}] * 10_001
    with pytest.raises(PlanError, match="more than 500 steps"):
        frames("u", parse_native_plan(plan_with(steps), "long.json", "u"))


def test_yaml_aliases_and_deep_documents_are_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    with pytest.raises(PlanError, match="aliases are not accepted"):
        parse_native_plan(bomb.encode(), "bomb.yaml", "u")
    with pytest.raises(PlanError, match="nested deeper"):
        parse_native_plan(("[" * 5000 + "]" * 5000).encode(), "deep.yaml", "u")
    with pytest.raises(PlanError, match="nested too deeply"):
        parse_native_plan(("[" * 100_000 + "]" * 100_000).encode(), "deep.json", "u")


# --- leftovers of an interrupted run ---------------------------------------------------------


def test_a_run_removes_what_an_interrupted_run_left_behind(settings, fixtures):
    hex32 = "0123456789abcdef" * 2
    old = time.time() - 7200
    land(
        settings, "fit/runner-1/a.fit", (fixtures / "fit" / "activity_1378220136.fit").read_bytes()
    )
    debris = [
        settings.lake / "silver" / "sessions" / f".part-0.parquet.{hex32}.tmp",
        settings.lake / "gold" / f".sessions.{hex32}.staging" / "part-0.parquet",
        settings.duckdb.parent / f".{settings.duckdb.name}.{hex32}.building",
        settings.duckdb.parent / f".{settings.duckdb.name}.{hex32}.building.wal",
        settings.landing / "fit" / "runner-1" / f".{hex32}.part",  # a ping download, 2 h old
    ]
    fresh = settings.landing / "garmin" / "push" / f".body.json.{hex32}.tmp"  # being written
    unrelated = settings.lake / ".keep.tmp"
    for path in [*debris, fresh, unrelated]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
        if path is not fresh:
            os.utime(path, (old, old))
    os.utime(debris[1].parent, (old, old))

    assert run_pipeline(settings, out=io.StringIO())

    assert [p for p in debris if p.exists()] == []
    assert not debris[1].parent.exists()
    assert fresh.exists() and unrelated.exists()
    assert query(settings, "SELECT count(*) FROM sessions")[0][0] == 1


# --- the operator's way out ----------------------------------------------------------------


def test_quarantine_lists_and_retries_after_a_fix(settings, fixtures, monkeypatch, capsys):
    from pipelines.cli import main

    land(
        settings, "fit/runner-1/a.fit", (fixtures / "fit" / "activity_1378220136.fit").read_bytes()
    )
    real = fit_ingest.decode_fit

    def decoder_bug(raw):
        raise IndexError("decoder bug")

    monkeypatch.setattr(fit_ingest, "decode_fit", decoder_bug)
    home = ["--home", str(settings.home)]
    assert main(["run", *home]) == 0
    assert query(settings, "SELECT count(*) FROM sessions")[0][0] == 0
    capsys.readouterr()

    assert main(["quarantine", *home]) == 0
    listed = capsys.readouterr().out
    assert "[fit] fit/runner-1/a.fit: unexpected IndexError: decoder bug" in listed
    assert "1 quarantine records, 1 inputs" in listed

    monkeypatch.setattr(fit_ingest, "decode_fit", real)  # the code is fixed
    assert main(["quarantine", "retry", "--stage", "fit", *home]) == 0
    assert "1 inputs released" in capsys.readouterr().out
    assert query(settings, "SELECT count(*) FROM sessions")[0][0] == 1
    assert query(settings, "SELECT count(*) FROM quarantine")[0][0] == 0


def test_a_refused_link_replaced_by_its_file_leaves_the_quarantine(settings, fixtures, tmp_path):
    target = tmp_path / "run.fit"
    target.write_bytes((fixtures / "fit" / "activity_1378220136.fit").read_bytes())
    link = settings.landing / "fit" / "runner-1" / "run.fit"
    link.parent.mkdir(parents=True)
    os.symlink(target, link)
    assert run_pipeline(settings, out=io.StringIO())
    assert "symbolic link" in reasons(settings)["fit/runner-1/run.fit"]

    link.unlink()
    link.write_bytes(target.read_bytes())
    assert run_pipeline(settings, out=io.StringIO())
    assert reasons(settings) == {}
    assert query(settings, "SELECT count(*) FROM sessions")[0][0] == 1
