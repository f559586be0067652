"""`write_report`: the HTML report over the bundled demo, edge cases, and a headless render."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.cli import main
from pipelines.report import write_report
from pipelines.report.html import downsample_trace

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


class Elements(HTMLParser):
    """Start tags and table rows, each tagged with the detail block it sits in: the
    `data-planned-session` / `data-session` div around it, or None."""

    BLOCK_KEYS = ("data-planned-session", "data-session")

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str], str | None]] = []
        self.rows: list[tuple[str, str | None, list[str]]] = []  # table class, block, cells
        self._blocks: list[tuple[str, int]] = []
        self._depth = 0
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None

    @property
    def block(self) -> str | None:
        return self._blocks[-1][0] if self._blocks else None

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        if tag == "div":
            self._depth += 1
            key = next((attributes[k] for k in self.BLOCK_KEYS if k in attributes), None)
            if key is not None:
                self._blocks.append((key, self._depth))
        self.tags.append((tag, attributes, self.block))
        if tag == "table":
            self._table = attributes.get("class", "")
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table is not None:
            self.rows.append((self._table, self.block, []))
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "div":
            if self._blocks and self._blocks[-1][1] == self._depth:
                self._blocks.pop()
            self._depth -= 1
        elif tag == "td" and self._cell is not None:
            self.rows[-1][2].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def table(self, cls: str, block: str | None = None) -> list[list[str]]:
        return [cells for c, b, cells in self.rows if c == cls and block in (None, b)]

    def having(self, tag: str, attribute: str, block: str | None = None) -> list[dict]:
        return [
            attrs
            for name, attrs, b in self.tags
            if name == tag and attribute in attrs and block in (None, b)
        ]

    def classed(self, tag: str, cls: str, block: str | None = None) -> list[dict]:
        return [a for a in self.having(tag, "class", block) if cls in a["class"].split()]

    def blocks(self, attribute: str) -> set[str]:
        return {attrs[attribute] for _, attrs, _ in self.tags if attribute in attrs}


def parse(text: str) -> Elements:
    parser = Elements()
    parser.feed(text)
    parser.close()
    return parser


def rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    """The bundled demo run once through the CLI; the env vars `main` exports are undone."""
    home = tmp_path_factory.mktemp("report") / "home"
    saved = dict(os.environ)
    try:
        assert main(["demo", "--home", str(home)]) == 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return home / "warehouse.duckdb"


@pytest.fixture(scope="module")
def report(demo_db: Path) -> Path:
    return write_report(demo_db, demo_db.parent / "out" / "report.html")


@pytest.fixture(scope="module")
def page(report: Path) -> str:
    return report.read_text(encoding="utf-8")


def test_report_is_one_self_contained_file(report: Path, page: str):
    assert report.is_file()
    assert [p.name for p in report.parent.iterdir()] == ["report.html"]  # no temp left
    assert page.startswith("<!doctype html>")
    assert "http://" not in page and "https://" not in page
    elements = parse(page)
    assert not elements.having("link", "href")
    assert not [a for _, a, _ in elements.tags if "src" in a]
    assert "default-src 'none'" in page  # the CSP forbids any network load


def test_every_athlete_has_a_section_with_volume_charts(demo_db: Path, page: str):
    expected = {u for (u,) in rows(demo_db, "SELECT DISTINCT user_id FROM sessions")}
    assert {"demo-runner", "demo-rider", "demo-api-athlete", "testuser"} <= expected
    elements = parse(page)
    sections = {a["data-user-id"] for a in elements.classed("section", "athlete")}
    assert sections == expected
    assert len(elements.classed("svg", "volume")) == 2 * len(expected)
    assert elements.classed("rect", "bar")


def test_planned_sessions_are_listed_with_status_grade_and_compliance(demo_db: Path, page: str):
    plans = rows(
        demo_db,
        "SELECT planned_date, name, status, grade, compliance_pct FROM plan_matches "
        "ORDER BY planned_date, name",
    )
    assert {grade for *_, grade, _ in plans} >= {"green", "yellow", "grey"}
    listed = sorted((row[0], row[1], row[3], row[4], row[5]) for row in parse(page).table("plans"))
    wanted = sorted(
        (str(day), name, status, grade, "–" if pct is None else f"{pct:.0f} %")
        for day, name, status, grade, pct in plans
    )
    assert listed == wanted
    for grade in ("green", "yellow", "grey"):
        assert f'class="grade grade-{grade}"' in page


def test_matched_plans_draw_every_step_and_mark_boundaries(demo_db: Path, page: str):
    matched = rows(
        demo_db,
        "SELECT planned_session_id, count(*) FILTER (WHERE start_time_utc IS NOT NULL), "
        "bool_or(start_interpolated OR end_interpolated) FROM plan_interval_matches "
        "WHERE session_id IS NOT NULL GROUP BY 1",
    )
    assert len(matched) == 3
    elements = parse(page)
    assert elements.blocks("data-planned-session") == {planned for planned, *_ in matched}
    for planned, n_steps, any_interpolated in matched:
        assert len(elements.classed("rect", "seg", block=planned)) == n_steps
        marks = {a["data-boundary"] for a in elements.having("g", "data-boundary", planned)}
        assert marks >= ({"interpolated"} if any_interpolated else {"exact"})
        assert len(elements.classed("path", "trace", block=planned)) == 1
    states = {a["class"] for a in elements.having("rect", "class")}
    assert {"seg seg-in", "seg seg-out", "seg seg-open", "band"} <= states
    assert 'data-boundary="exact"' in page


def test_sessions_with_laps_get_lap_charts(demo_db: Path, page: str):
    with_laps = rows(
        demo_db,
        "SELECT session_id, count(*) FROM intervals WHERE kind = 'lap' GROUP BY 1",
    )
    elements = parse(page)
    assert elements.blocks("data-session") >= {session_id for session_id, _ in with_laps}
    for session_id, n_laps in with_laps:
        assert len(elements.table("laps", block=session_id)) == n_laps
        assert len(elements.classed("svg", "trace", block=session_id)) == 1
        assert elements.having("g", "data-boundary", block=session_id)


def test_report_for_one_user_only(demo_db: Path, tmp_path: Path):
    out = write_report(demo_db, tmp_path / "runner.html", user_id="demo-runner")
    elements = parse(out.read_text(encoding="utf-8"))
    assert [a["data-user-id"] for a in elements.classed("section", "athlete")] == ["demo-runner"]


def _build_warehouse(path: Path, user_id: str, n_samples: int) -> None:
    """A warehouse with sessions and samples only: no laps, no plans, no other tables."""
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE sessions AS SELECT 'hostile' AS session_id, ?::VARCHAR AS user_id, "
            "'fit' AS source, 'running' AS sport, TIMESTAMPTZ '2024-03-04 06:00:00+00' "
            "AS start_time_utc, TIMESTAMP '2024-03-04 07:00:00' AS start_time_local, "
            "?::DOUBLE AS elapsed_s, ?::DOUBLE AS timer_s, ?::DOUBLE * 3 AS distance_m, "
            "150.0 AS avg_hr, 0::BIGINT AS n_laps",
            [user_id, n_samples, n_samples, n_samples],
        )
        con.execute(
            "CREATE TABLE samples AS SELECT 'hostile' AS session_id, ?::VARCHAR AS user_id, "
            "TIMESTAMPTZ '2024-03-04 06:00:00+00' + to_seconds(i) AS time_utc, "
            "i * 3.0::DOUBLE AS distance_m, 3.0 + sin(i / 60.0) AS speed_mps "
            "FROM range(?) t(i)",
            [user_id, n_samples],
        )


def test_text_is_escaped_missing_tables_are_tolerated_and_traces_downsampled(tmp_path: Path):
    hostile = "<script>alert('x')</script>&\"me\""
    db = tmp_path / "tiny.duckdb"
    _build_warehouse(db, hostile, n_samples=20_000)
    page = write_report(db, tmp_path / "tiny.html").read_text(encoding="utf-8")
    assert hostile not in page and "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;me&quot;" in page
    assert "no plans" in page
    elements = parse(page)
    (trace,) = elements.classed("path", "trace")
    assert 100 < len(re.findall(r"[ML]", trace["d"])) <= 1500


def test_trace_speed_is_distance_over_time_else_the_sensor_and_is_downsampled():
    """The trace must agree with lap averages (distance / time), whatever the speed field says;
    a source without distance falls back to its speed field."""
    start = datetime(2024, 3, 4, 6, tzinfo=UTC)
    n = 6_000
    samples = pl.DataFrame(
        {
            "time_utc": pl.datetime_range(
                start, start + timedelta(seconds=n - 1), "1s", eager=True, time_zone="UTC"
            ),
            "distance_m": [3.0 * i for i in range(n)],
            "speed_mps": [2.7] * n,  # a sensor reading 10 % low
        }
    )
    trace = downsample_trace(samples, start, max_points=500)
    assert trace.height == 500
    after_first = trace["speed_mps"][1:]  # the very first sample has no distance step yet
    assert after_first.min() == pytest.approx(3.0)
    assert after_first.max() == pytest.approx(3.0)
    assert trace["gap_before"].sum() == 1  # only the first point starts a line
    no_distance = samples.with_columns(distance_m=pl.lit(None, pl.Float64))
    assert downsample_trace(no_distance, start)["speed_mps"].max() == pytest.approx(2.7)


def test_empty_and_missing_warehouses(tmp_path: Path):
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    page = write_report(empty, tmp_path / "empty.html").read_text(encoding="utf-8")
    assert "no athletes" in page
    unknown = write_report(empty, tmp_path / "nobody.html", user_id="nobody")
    assert "no sessions" in unknown.read_text(encoding="utf-8")
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "absent.duckdb", tmp_path / "absent.html")


def _chromium(tmp_path: Path, name: str, *args: str) -> subprocess.Popen:
    profile = tmp_path / f"profile-{name}"
    return subprocess.Popen(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _console_lines(stderr: str) -> list[str]:
    """Page console output (errors, CSP violations, uncaught exceptions) in Chromium's log."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_report_renders_in_headless_chromium(report: Path, page: str, tmp_path: Path):
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    url = report.resolve().as_uri()
    png = tmp_path / "report.png"
    dom_run = _chromium(tmp_path, "dom", "--dump-dom", url)
    shot_run = _chromium(tmp_path, "shot", f"--screenshot={png}", "--window-size=1280,4000", url)
    dom, dom_err = dom_run.communicate(timeout=60)
    _, shot_err = shot_run.communicate(timeout=60)
    assert dom_run.returncode == 0, dom_err[-2000:]
    assert shot_run.returncode == 0, shot_err[-2000:]

    charts = page.count('<svg class="chart')
    assert charts >= 12
    assert f'data-report-ready="{charts}"' in dom  # the closing script ran and saw every chart
    root = re.search(r"<html[^>]*>", dom).group(0)
    assert "data-js-errors" not in root, root  # the error hook in <head> recorded nothing
    assert dom.count('<svg class="chart') == charts
    assert 'data-boundary="interpolated"' in dom
    assert _console_lines(dom_err) == [] and _console_lines(shot_err) == []

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000  # a blank 1280×4000 page compresses to a few KB
