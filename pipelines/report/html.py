"""A self-contained HTML training report, one section per athlete, read from the warehouse.

The file must open anywhere (a laptop on a train, an e-mail attachment), so it carries
everything inline: CSS, two tiny scripts (error capture and a "rendered" marker, nothing the
report needs) and SVG charts drawn here in Python. A Content-Security-Policy forbids every
network load, so a stray external reference fails loudly instead of silently phoning home.

What it shows per athlete: weekly volume per sport, planned vs done (status, grade,
compliance), each matched planned session's steps over the session's speed/pace trace with
exact and interpolated boundaries told apart, and each recorded session's laps drawn the
same way. All text from the data is escaped; all SQL is parameterized; the warehouse is
opened read-only, so a report can be written while a pipeline run is going on.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path

import duckdb
import polars as pl

from pipelines.plans.matching import sport_family

MAX_TRACE_POINTS = 1500  # per chart: keeps a report with dozens of charts light
SMOOTHING_WINDOW = "20s"  # GPS distance is jumpy second to second; 20 s still shows 200 m reps
GAP_BREAK_S = 30.0  # no line drawn across a recording gap longer than this
PACE_FLOOR_MPS = 1.0  # pace axes stop at 16:40 /km: standing still would squash the rest
MAX_SESSION_CHARTS = 40  # most recent sessions (and matched plans) drawn per athlete
MAX_SESSION_ROWS = 500
MAX_WEEKS = 104
CONTIGUOUS_WEEKS = 26  # spans up to this many weeks show empty weeks too
PACE_FAMILIES = frozenset({"running", "walking"})
FAMILY_COLORS = {
    "running": "#e4572e",
    "cycling": "#2e86ab",
    "swimming": "#17becf",
    "walking": "#8fb339",
}
EXTRA_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#f4a259", "#5c6bc0", "#7f7f7f")
GRADES = ("green", "yellow", "red", "grey")

SESSIONS_SQL = """
SELECT s.session_id, s.sport, s.source, s.start_time_utc, s.start_time_local,
       s.elapsed_s, s.timer_s, s.distance_m, s.avg_hr, s.n_laps,
       EXISTS (
           SELECT 1 FROM sessions c
           WHERE c.user_id = s.user_id AND c.session_id <> s.session_id
             AND c.start_time_utc >= s.start_time_utc
             AND c.start_time_utc < s.start_time_utc
                 + to_seconds(coalesce(s.elapsed_s, s.timer_s, 0))
       ) AS contains_others
FROM sessions s
WHERE s.user_id = ?
ORDER BY s.start_time_utc, s.session_id
"""
PLANS_SQL = """
SELECT planned_session_id, planned_date, sport, name, plan_id, source, session_id, status,
       compliance_pct, grade, day_offset, n_steps, n_steps_matched, evidence
FROM plan_matches
WHERE user_id = ?
ORDER BY planned_date, planned_session_id
"""
STEPS_SQL = """
SELECT step_index, kind, name, matched, evidence, start_time_utc, end_time_utc,
       duration_type, planned_duration_s, planned_distance_m, target_type, target_low,
       target_high, actual_duration_s, actual_distance_m, actual_speed_mps,
       actual_pace_s_per_km, actual_avg_hr, time_in_target_pct, within_target,
       compliance_pct, start_interpolated, end_interpolated
FROM plan_interval_matches
WHERE planned_session_id = ?
ORDER BY step_index
"""
LAPS_SQL = """
SELECT interval_index, start_time_utc, end_time_utc, timer_s, distance_m, avg_speed_mps,
       avg_pace_s_per_km, avg_hr, start_interpolated, end_interpolated, start_out_of_range,
       end_out_of_range, lap_trigger
FROM intervals
WHERE session_id = ? AND kind = 'lap'
ORDER BY interval_index
"""
SAMPLES_SQL = """
SELECT time_utc, distance_m, speed_mps
FROM samples
WHERE session_id = ? AND user_id = ?
ORDER BY time_utc
"""

CSS = """
:root { --fg:#1d2329; --muted:#68737d; --line:#d8dde2; --green:#2e7d32; --yellow:#e0a100;
        --red:#c62828; --grey:#9e9e9e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); margin: 0 auto; max-width: 1180px; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-top: 12px; border-top: 3px solid var(--fg); }
h3 { font-size: 16px; margin: 24px 0 6px; }
h4 { font-size: 14px; margin: 18px 0 4px; }
p.meta, p.note, p.empty { color: var(--muted); margin: 4px 0; }
p.empty { font-style: italic; }
nav a { margin-right: 12px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 8px; text-align: left;
         white-space: nowrap; }
th { background: #f3f5f7; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grade { display: inline-block; min-width: 52px; padding: 1px 8px; border-radius: 9px;
         color: #fff; font-weight: 600; text-align: center; font-size: 12px; }
.grade-green { background: var(--green); } .grade-yellow { background: var(--yellow); }
.grade-red { background: var(--red); } .grade-grey { background: var(--grey); }
.flag { color: #d35400; font-weight: 600; }
.chart-block { margin: 6px 0 18px; }
.volume-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr));
               gap: 12px; }
svg.chart { display: block; max-width: 100%; height: auto; background: #fff;
            border: 1px solid var(--line); }
svg.chart text { font-size: 11px; fill: #3a434b; }
svg.chart .axis-title { font-size: 12px; fill: var(--muted); }
svg.chart .grid { stroke: #e7eaee; stroke-width: 1; }
svg.chart .axis { stroke: #9aa3ab; stroke-width: 1; }
svg.chart .trace { fill: none; stroke: #1f4e79; stroke-width: 1.3; stroke-linejoin: round; }
svg.chart .seg-in { fill: #43a047; fill-opacity: 0.20; }
svg.chart .seg-out { fill: #e53935; fill-opacity: 0.20; }
svg.chart .seg-open { fill: #9e9e9e; fill-opacity: 0.14; }
svg.chart .seg-even { fill: #90a4ae; fill-opacity: 0.10; }
svg.chart .seg-odd { fill: #90a4ae; fill-opacity: 0.24; }
svg.chart .band { fill: #2e7d32; fill-opacity: 0.16; stroke: #2e7d32; stroke-width: 1;
                  stroke-dasharray: 4 3; }
svg.chart .level { stroke: #111; stroke-width: 2.2; }
svg.chart .boundary.exact { stroke: #37474f; stroke-width: 1.2; }
svg.chart .boundary.interpolated { stroke: #d35400; stroke-width: 1.4;
                                   stroke-dasharray: 5 3; }
svg.chart .marker.exact { fill: #37474f; }
svg.chart .marker.interpolated { fill: #fff; stroke: #d35400; stroke-width: 1.6; }
svg.chart .seg-label { font-size: 10px; fill: #263238; paint-order: stroke; stroke: #fff;
                      stroke-width: 3px; stroke-linejoin: round; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 12px; color: var(--muted);
          margin: 2px 0 4px; align-items: center; }
.legend span { display: inline-flex; align-items: center; gap: 5px; }
.legend i { display: inline-block; width: 14px; height: 11px; border: 1px solid #0002; }
"""

# First thing in <head>: records any script error or failed load on <html> so a headless
# browser's DOM dump shows it; the report itself needs no script at all.
ERROR_CAPTURE_JS = """
window.addEventListener('error', function (e) {
  var root = document.documentElement;
  root.setAttribute('data-js-errors', String(Number(root.getAttribute('data-js-errors') || 0) + 1));
  root.setAttribute('data-js-error-message', String(e.message || (e.target && e.target.tagName)));
}, true);
"""
READY_JS = """
document.documentElement.setAttribute('data-report-ready',
  String(document.querySelectorAll('svg.chart').length));
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


# ---------------------------------------------------------------------------------------------
# entry points


def write_report(duckdb_path: Path, out_path: Path, user_id: str | None = None) -> Path:
    """Write the report for one athlete (or all) to `out_path` atomically; return the path.

    Temp file + os.replace: a browser or a sync tool never sees half a report.
    """
    duckdb_path, out_path = Path(duckdb_path), Path(out_path)
    if not duckdb_path.is_file():
        raise FileNotFoundError(f"no warehouse at {duckdb_path}: run `wearhouse run` first")
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        document = build_report(con, user_id, source_name=duckdb_path.name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "x") rather than mkstemp: the report gets the usual umask permissions (0600
    # would hide it from a web server or a colleague).
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(document)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path


def build_report(
    con: duckdb.DuckDBPyConnection, user_id: str | None = None, source_name: str = "warehouse"
) -> str:
    """The whole HTML document as a string (separate from writing, so tests can inspect it)."""
    tables = _tables(con)
    athletes = [user_id] if user_id is not None else _athletes(con, tables)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        "<header><h1>wearhouse training report</h1>",
        f'<p class="meta">{_e(source_name)} · generated {_e(generated)} · '
        f"{len(athletes)} athlete{'s' if len(athletes) != 1 else ''}</p>",
    ]
    if athletes:
        links = "".join(f'<a href="#{_anchor("athlete", a)}">{_e(a)}</a>' for a in athletes)
        body.append(f"<nav>{links}</nav>")
    body.append("</header>")
    if not athletes:
        body.append('<p class="empty">no athletes: the warehouse has no sessions or plans</p>')
    body.extend(_athlete_section(con, tables, athlete) for athlete in athletes)
    return _page("wearhouse report", "\n".join(body))


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<script>{ERROR_CAPTURE_JS}</script>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n<script>{READY_JS}</script>\n"
        "</body>\n</html>\n"
    )


# ---------------------------------------------------------------------------------------------
# loading (parameterized, tolerant of a warehouse that lacks tables)


def _tables(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    return frozenset(name for (name,) in rows)


def _query(
    con: duckdb.DuckDBPyConnection,
    tables: frozenset[str],
    needs: Iterable[str],
    sql: str,
    params: Sequence[object],
) -> pl.DataFrame | None:
    """Run `sql` with bound params, or return None when a table it reads is missing."""
    if not set(needs) <= tables:
        return None
    return con.sql(sql, params=list(params)).pl()


def _athletes(con: duckdb.DuckDBPyConnection, tables: frozenset[str]) -> list[str]:
    """Everyone with sessions or plans; erased users (null id) are gone by construction."""
    present = [t for t in ("sessions", "plan_matches", "planned_sessions") if t in tables]
    if not present:
        return []
    # Only fixed table names are interpolated here; there are no values in this query.
    union = " UNION ".join(f"SELECT user_id FROM {table}" for table in present)
    rows = con.execute(
        f"SELECT DISTINCT user_id FROM ({union}) WHERE user_id IS NOT NULL ORDER BY user_id"
    ).fetchall()
    return [user for (user,) in rows]


def _sessions(con, tables, user_id: str) -> pl.DataFrame:
    frame = _query(con, tables, ["sessions"], SESSIONS_SQL, [user_id])
    if frame is None or frame.is_empty():
        return pl.DataFrame()
    return with_day_and_family(frame)


def with_day_and_family(sessions: pl.DataFrame) -> pl.DataFrame:
    """Local day (UTC when the offset is unknown) and sport family, for weeks and axes."""
    return sessions.with_columns(
        day=pl.coalesce(
            pl.col("start_time_local"),
            # DuckDB hands TIMESTAMPTZ over in the client's zone: pin UTC before dropping it.
            pl.col("start_time_utc").dt.convert_time_zone("UTC").dt.replace_time_zone(None),
        ).dt.date(),
        family=sport_family(pl.col("sport").fill_null("other")),
    )


def _samples(con, tables, session_id: str, user_id: str) -> pl.DataFrame | None:
    return _query(con, tables, ["samples"], SAMPLES_SQL, [session_id, user_id])


# ---------------------------------------------------------------------------------------------
# Polars transforms


def weekly_volume(sessions: pl.DataFrame) -> pl.DataFrame:
    """Distance (km) and timer time (h) per ISO week (Monday) and sport family.

    A multisport container whose legs are sessions of their own is left out, else its time
    would be counted twice.
    """
    container = pl.col("sport").str.contains("multi") & pl.col("contains_others")
    return (
        sessions.filter(~container.fill_null(False))
        .with_columns(week=pl.col("day").dt.truncate("1w"))
        .group_by("week", "family")
        .agg(
            km=pl.col("distance_m").fill_null(0.0).sum() / 1000.0,
            hours=pl.coalesce("timer_s", "elapsed_s").fill_null(0.0).sum() / 3600.0,
            n=pl.len(),
        )
        .sort("week", "family")
    )


def downsample_trace(
    samples: pl.DataFrame, start: datetime, max_points: int = MAX_TRACE_POINTS
) -> pl.DataFrame:
    """Speed against seconds since `start`, smoothed and averaged into ≤ max_points buckets.

    Speed is distance over time in a trailing window, the same definition the lap and step
    averages use (distance / timer), so the trace and the average bars agree; a watch's own
    speed field can run 10 % apart from its distance. Where a source has no distance, its
    speed field is averaged instead. Buckets are equal time spans, so smart recording (dense
    when changing, sparse when steady) does not distort the time axis. `gap_before` marks
    points after a recording gap, where the line must break.
    """
    empty = pl.DataFrame(
        schema={"t_s": pl.Float64, "speed_mps": pl.Float64, "gap_before": pl.Boolean}
    )
    if samples.is_empty():
        return empty
    window = {"by": "time_utc", "window_size": SMOOTHING_WINDOW}
    step = pl.col("distance_m").diff()
    moved = step.rolling_sum_by(**window)  # a sum over nulls only is 0, hence `measured`
    measured = step.is_not_null().cast(pl.Int32).rolling_sum_by(**window) > 0
    took = pl.col("t_s").diff().rolling_sum_by(**window)
    by_distance = pl.when(measured & (took > 0)).then(moved / took)
    by_sensor = pl.col("speed_mps").rolling_mean_by(**window)
    clean = (
        samples.sort("time_utc")
        .with_columns(pl.col("distance_m", "speed_mps").cast(pl.Float64))
        .with_columns(t_s=(pl.col("time_utc") - start).dt.total_seconds(fractional=True))
        .with_columns(speed_mps=pl.coalesce(by_distance, by_sensor))
        .filter(pl.col("speed_mps").is_finite() & (pl.col("speed_mps") >= 0))
    )
    if clean.is_empty():
        return empty
    first, last = clean["t_s"].min(), clean["t_s"].max()
    width = max((last - first) / max_points, 1e-6)
    bucket = ((pl.col("t_s") - first) / width).floor().clip(0, max_points - 1)
    return (
        clean.group_by(bucket.alias("bucket"))
        .agg(pl.col("t_s").mean(), pl.col("speed_mps").mean())
        .sort("t_s")
        .select(
            "t_s",
            "speed_mps",
            gap_before=(pl.col("t_s").diff() > max(GAP_BREAK_S, 3 * width)).fill_null(True),
        )
    )


def _relative(frame: pl.DataFrame, start: datetime) -> pl.DataFrame:
    """Boundary instants as seconds since the session start (the trace's time axis)."""
    return frame.with_columns(
        start_s=(pl.col("start_time_utc") - start).dt.total_seconds(fractional=True),
        end_s=(pl.col("end_time_utc") - start).dt.total_seconds(fractional=True),
    )


# ---------------------------------------------------------------------------------------------
# formatting


def _e(value: object) -> str:
    """Escape anything for HTML text or attribute values; missing values show as a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return escape(str(value), quote=True)


def _num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _anchor(kind: str, key: str) -> str:
    """A safe, stable element id for any text (ids and names may hold anything)."""
    return f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _clock(seconds: object) -> str:
    if not _num(seconds):
        return "–"
    total = round(float(seconds))
    sign, total = ("-" if total < 0 else ""), abs(total)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}" if hours else f"{sign}{minutes}:{secs:02d}"


def _km(metres: object) -> str:
    return f"{float(metres) / 1000:.2f} km" if _num(metres) else "–"


def _pace(speed_mps: object) -> str:
    if not _num(speed_mps) or float(speed_mps) <= 0:
        return "–"
    return f"{_clock(1000.0 / float(speed_mps))} /km"


def _speed(speed_mps: object, pace: bool) -> str:
    """Pace for runners and walkers, km/h for everyone else (how each sport talks)."""
    if pace:
        return _pace(speed_mps)
    return f"{float(speed_mps) * 3.6:.1f} km/h" if _num(speed_mps) else "–"


def _pct(value: object) -> str:
    return f"{float(value):.0f} %" if _num(value) else "–"


def _when(local: object, utc: object) -> str:
    if isinstance(local, datetime):
        return local.strftime("%Y-%m-%d %H:%M")
    if isinstance(utc, datetime):
        return utc.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "–"


def _grade_badge(grade: object) -> str:
    name = grade if grade in GRADES else "grey"
    return f'<span class="grade grade-{name}" data-grade="{name}">{_e(grade or "none")}</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """Cells arrive already escaped/marked up; headers are fixed strings, escaped anyway."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _td(text: str, numeric: bool = False) -> str:
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def _family_colors(families: Iterable[str]) -> dict[str, str]:
    extra = iter(EXTRA_COLORS * 4)
    return {f: FAMILY_COLORS.get(f) or next(extra, "#7f7f7f") for f in sorted(set(families))}


# ---------------------------------------------------------------------------------------------
# SVG primitives


@dataclass(frozen=True)
class Frame:
    """Maps data coordinates onto the SVG canvas: the one place that knows margins/scales."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = 1100
    height: int = 280
    left: int = 70
    right: int = 14
    top: int = 24
    bottom: int = 34

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom

    @property
    def floor(self) -> float:
        return self.top + self.plot_h

    def x(self, value: float) -> float:
        return self.left + (value - self.x0) / ((self.x1 - self.x0) or 1.0) * self.plot_w

    def y(self, value: float) -> float:
        return self.top + (1 - (value - self.y0) / ((self.y1 - self.y0) or 1.0)) * self.plot_h

    def x_expr(self, column: str) -> pl.Expr:
        scale = self.plot_w / ((self.x1 - self.x0) or 1.0)
        return self.left + (pl.col(column) - self.x0) * scale

    def y_expr(self, column: str) -> pl.Expr:
        scale = self.plot_h / ((self.y1 - self.y0) or 1.0)
        return self.top + self.plot_h - (pl.col(column).clip(self.y0, self.y1) - self.y0) * scale


def _f(value: float) -> str:
    return f"{value:.1f}"


def _svg(frame: Frame, cls: str, label: str, parts: Iterable[str]) -> str:
    return (
        f'<svg class="chart {cls}" viewBox="0 0 {frame.width} {frame.height}" '
        f'width="{frame.width}" height="{frame.height}" role="img" aria-label="{_e(label)}">'
        + "".join(parts)
        + "</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "middle", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{klass}>{_e(text)}</text>'


def _nice_step(span: float, target: int) -> float:
    raw = max(span, 1e-9) / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    step = _nice_step(hi - lo, target)
    first = math.ceil(lo / step - 1e-9) * step
    count = math.floor((hi - first) / step + 1e-9) + 1
    return [first + i * step for i in range(max(count, 0))]


def _grid_y(frame: Frame, ticks: Iterable[tuple[float, str]], title: str) -> list[str]:
    parts = []
    for value, label in ticks:
        y = frame.y(value)
        parts.append(
            f'<line class="grid" x1="{frame.left}" x2="{_f(frame.width - frame.right)}" '
            f'y1="{_f(y)}" y2="{_f(y)}"/>'
        )
        parts.append(_text(frame.left - 6, y + 4, label, anchor="end"))
    mid = frame.top + frame.plot_h / 2
    parts.append(
        f'<text class="axis-title" x="14" y="{_f(mid)}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_f(mid)})">{_e(title)}</text>'
    )
    return parts


def _axis_x(frame: Frame) -> str:
    right = _f(frame.width - frame.right)
    return (
        f'<line class="axis" x1="{frame.left}" x2="{right}" y1="{_f(frame.floor)}" '
        f'y2="{_f(frame.floor)}"/>'
    )


# ---------------------------------------------------------------------------------------------
# weekly volume chart


def _week_axis(weeks: pl.Series) -> tuple[list[date], str]:
    """Every week when the span is short; else only active weeks (years of gaps are noise)."""
    first, last = weeks.min(), weeks.max()
    if (last - first).days // 7 + 1 <= CONTIGUOUS_WEEKS:
        return pl.date_range(first, last, "1w", eager=True).to_list(), ""
    active = weeks.unique().sort().to_list()
    note = "weeks without activity are left out"
    if len(active) > MAX_WEEKS:
        active = active[-MAX_WEEKS:]
        note += f"; only the last {MAX_WEEKS} active weeks are shown"
    return active, note


def _volume_chart(
    volume: pl.DataFrame,
    weeks: list[date],
    value: str,
    title: str,
    unit: str,
    colors: dict[str, str],
    min_top: float,
) -> str:
    """Stacked bars, one per week, one colour per sport family, native tooltips.

    `min_top` keeps the axis sensible when a week holds almost nothing (a 5 s test ride).
    """
    totals = volume.group_by("week").agg(pl.col(value).sum())
    total_max = float(totals[value].max() or 0.0)
    step = _nice_step(max(total_max, min_top) * 1.05, 4)
    ticks = [i * step for i in range(math.ceil(max(total_max, min_top) * 1.05 / step) + 1)]
    frame = Frame(0, len(weeks), 0, ticks[-1], width=560, height=220, left=58)
    slot = frame.plot_w / len(weeks)
    bar = max(min(slot * 0.72, 40), 1.5)
    parts = _grid_y(frame, [(t, f"{t:g}") for t in ticks], f"{title} ({unit})")
    if total_max <= 0:
        parts.append(_text(frame.left + frame.plot_w / 2, frame.top + 40, f"no {title} recorded"))
    index = {week: i for i, week in enumerate(weeks)}
    stacks = [0.0] * len(weeks)
    for row in (
        volume.filter(pl.col("week").is_in(weeks)).sort("week", "family").iter_rows(named=True)
    ):
        i = index[row["week"]]
        amount = float(row[value])
        if amount <= 0:
            continue
        y_top, y_bottom = frame.y(stacks[i] + amount), frame.y(stacks[i])
        stacks[i] += amount
        x = frame.x(i + 0.5) - bar / 2
        tip = (
            f"{row['week']:%G-W%V} {row['family']}: {amount:.1f} {unit} "
            f"({row['n']} session{'s' if row['n'] != 1 else ''})"
        )
        parts.append(
            f'<rect class="bar" data-family="{_e(row["family"])}" x="{_f(x)}" '
            f'y="{_f(y_top)}" width="{_f(bar)}" height="{_f(max(y_bottom - y_top, 0.5))}" '
            f'fill="{colors[row["family"]]}"><title>{_e(tip)}</title></rect>'
        )
    parts.append(_axis_x(frame))
    every = max(1, math.ceil(62 / slot))
    for i, week in enumerate(weeks):
        if i % every == 0:
            parts.append(_text(frame.x(i + 0.5), frame.floor + 16, f"{week:%G-W%V}"))
    return _svg(frame, "volume", f"weekly {title}", parts)


def _volume_section(sessions: pl.DataFrame) -> str:
    if sessions.is_empty():
        return "<h3>Weekly volume</h3>" + '<p class="empty">no sessions</p>'
    volume = weekly_volume(sessions)
    if volume.is_empty():
        return "<h3>Weekly volume</h3>" + '<p class="empty">no sessions</p>'
    weeks, note = _week_axis(volume["week"])
    colors = _family_colors(volume["family"].to_list())
    legend = "".join(
        f'<span><i style="background:{color}"></i>{_e(family)}</span>'
        for family, color in colors.items()
    )
    charts = [
        _volume_chart(volume, weeks, "km", "distance", "km", colors, min_top=1.0),
        _volume_chart(volume, weeks, "hours", "timer time", "h", colors, min_top=0.5),
    ]
    note_html = f'<p class="note">{_e(note)}</p>' if note else ""
    return (
        "<h3>Weekly volume</h3>"
        f'<p class="note">per ISO week (Monday–Sunday, local time) and sport</p>{note_html}'
        f'<div class="legend">{legend}</div>'
        + '<div class="chart-block volume-grid">'
        + "".join(f"<div>{c}</div>" for c in charts)
        + "</div>"
    )


# ---------------------------------------------------------------------------------------------
# trace charts: planned steps or laps over the speed/pace trace


@dataclass(frozen=True)
class Segment:
    """A stretch drawn over the trace: a planned step at its matched times, or a lap."""

    start_s: float
    end_s: float
    label: str
    state: str  # in | out | open (steps by within_target), even | odd (laps)
    start_interpolated: bool
    end_interpolated: bool
    title: str
    band: tuple[float, float] | None = None  # target speed range, m/s
    level: float | None = None  # actual average speed, m/s


@dataclass(frozen=True)
class Boundary:
    t_s: float
    interpolated: bool
    title: str


def boundaries(segments: Sequence[Segment], merge_s: float) -> list[Boundary]:
    """One mark per instant on screen: a step's end and the next start closer than `merge_s`
    are drawn as one boundary, interpolated when either side was (the tooltip says which)."""
    edges = []
    for seg in segments:
        edges.append((seg.start_s, seg.start_interpolated, f"start of {seg.label}"))
        edges.append((seg.end_s, seg.end_interpolated, f"end of {seg.label}"))
    edges.sort(key=lambda edge: edge[0])
    merged: list[list] = []
    for t_s, interpolated, what in edges:
        how = "interpolated between samples" if interpolated else "at a sample"
        if merged and t_s - merged[-1][0] < merge_s:
            merged[-1][1] = merged[-1][1] or interpolated
            merged[-1][2].append(f"{what} ({_clock(t_s)}, {how})")
        else:
            merged.append([t_s, interpolated, [f"{what} ({_clock(t_s)}, {how})"]])
    return [Boundary(t, bool(i), "; ".join(texts)) for t, i, texts in merged]


def _y_domain(trace: pl.DataFrame, segments: Sequence[Segment], pace: bool) -> tuple[float, float]:
    """Robust range: quantiles of the trace (spikes ignored) widened to show every band."""
    low, high = trace.select(
        pl.col("speed_mps").quantile(0.03).alias("low"),
        pl.col("speed_mps").quantile(0.995).alias("high"),
    ).row(0)
    values = [float(v) for v in (low, high) if _num(v)]
    for seg in segments:
        values.extend(v for v in (seg.band or ()) if _num(v))
        if _num(seg.level):
            values.append(float(seg.level))
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    lo, hi = lo * 0.85, hi * 1.08
    if pace:
        lo = max(lo, PACE_FLOOR_MPS)
        hi = max(hi, lo * 1.3)
    return max(lo, 0.0), hi if hi > lo else lo + 1.0


def _speed_ticks(lo: float, hi: float, pace: bool) -> list[tuple[float, str]]:
    """Pace labels on a speed axis (faster is up, standing still is not at infinity)."""
    if not pace:
        return [(kmh / 3.6, f"{kmh:g}") for kmh in _ticks(lo * 3.6, hi * 3.6, 5)]
    slow, fast = 1000.0 / lo, 1000.0 / hi
    step = next((s for s in (10, 15, 30, 60, 120, 300) if (slow - fast) / s <= 7), 600)
    first = math.ceil(fast / step) * step
    paces = [first + i * step for i in range(int((slow - first) // step) + 1)]
    return [(1000.0 / p, _clock(p)) for p in paces]


def _thin(frame: Frame, ticks: list[tuple[float, str]], min_px: float = 15.0) -> list:
    """Drop labels that would overlap: pace ticks bunch up at the slow (bottom) end."""
    kept: list[tuple[float, str]] = []
    for value, label in sorted(ticks, key=lambda tick: -tick[0]):
        if not kept or abs(frame.y(value) - frame.y(kept[-1][0])) >= min_px:
            kept.append((value, label))
    return kept


def _time_ticks(duration: float) -> list[float]:
    step = next(
        (
            s
            for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
            if duration / s <= 10
        ),
        14400,
    )
    return [i * step for i in range(int(duration // step) + 1)]


def _segment_parts(frame: Frame, segments: Sequence[Segment]) -> list[str]:
    parts = []
    for seg in segments:
        x0, x1 = frame.x(seg.start_s), frame.x(seg.end_s)
        parts.append(
            f'<rect class="seg seg-{seg.state}" x="{_f(x0)}" y="{frame.top}" '
            f'width="{_f(max(x1 - x0, 0.5))}" height="{_f(frame.plot_h)}">'
            f"<title>{_e(seg.title)}</title></rect>"
        )
        if seg.band and all(_num(v) for v in seg.band):
            y_hi = frame.y(min(max(seg.band), frame.y1))
            y_lo = frame.y(max(min(seg.band), frame.y0))
            parts.append(
                f'<rect class="band" x="{_f(x0)}" y="{_f(y_hi)}" width="{_f(max(x1 - x0, 0.5))}" '
                f'height="{_f(max(y_lo - y_hi, 2.0))}"><title>target {_e(seg.title)}</title></rect>'
            )
        if x1 - x0 >= 6.5 * len(seg.label) + 6:
            parts.append(_text((x0 + x1) / 2, frame.top + 12, seg.label, cls="seg-label"))
    return parts


def _level_parts(frame: Frame, segments: Sequence[Segment]) -> list[str]:
    parts = []
    for seg in segments:
        if _num(seg.level) and frame.y0 <= seg.level <= frame.y1:
            y = _f(frame.y(seg.level))
            parts.append(
                f'<line class="level" x1="{_f(frame.x(seg.start_s))}" x2="{_f(frame.x(seg.end_s))}"'
                f' y1="{y}" y2="{y}"><title>average of {_e(seg.title)}</title></line>'
            )
    return parts


def _boundary_parts(frame: Frame, marks: Sequence[Boundary]) -> list[str]:
    """Solid line + filled triangle at a sample; dashed line + hollow diamond interpolated."""
    parts = []
    for mark in marks:
        kind = "interpolated" if mark.interpolated else "exact"
        x = frame.x(mark.t_s)
        y = frame.top - 7
        if mark.interpolated:
            shape = f"M{_f(x)},{_f(y - 5)} L{_f(x + 4.5)},{_f(y)} L{_f(x)},{_f(y + 5)} " + (
                f"L{_f(x - 4.5)},{_f(y)} Z"
            )
        else:
            shape = f"M{_f(x - 4)},{_f(y - 4)} L{_f(x + 4)},{_f(y - 4)} L{_f(x)},{_f(y + 4)} Z"
        parts.append(
            f'<g class="boundary-mark" data-boundary="{kind}"><title>{_e(mark.title)}</title>'
            f'<line class="boundary {kind}" x1="{_f(x)}" x2="{_f(x)}" y1="{frame.top}" '
            f'y2="{_f(frame.floor)}"/><path class="marker {kind}" d="{shape}"/></g>'
        )
    return parts


def _trace_path(frame: Frame, trace: pl.DataFrame) -> str:
    """The SVG path built in Polars: one string op over ≤ MAX_TRACE_POINTS rows."""
    if trace.is_empty():
        return ""
    command = pl.when(pl.col("gap_before")).then(pl.lit("M")).otherwise(pl.lit("L"))
    d = trace.select(
        pl.concat_str(
            command,
            frame.x_expr("t_s").round(1).cast(pl.String),
            pl.lit(","),
            frame.y_expr("speed_mps").round(1).cast(pl.String),
        ).str.join(" ")
    ).item()
    return f'<path class="trace" d="{d}"/>'


def trace_chart(trace: pl.DataFrame, segments: Sequence[Segment], pace: bool, label: str) -> str:
    """Segments (shading, target bands, averages, boundaries) over the speed or pace trace."""
    ends = [seg.end_s for seg in segments] + [float(trace["t_s"].max() or 0.0)]
    starts = [seg.start_s for seg in segments] + [0.0]
    x0, x1 = min(starts), max(max(ends), min(starts) + 1.0)
    lo, hi = _y_domain(trace, segments, pace)
    frame = Frame(x0, x1, lo, hi)
    merge_s = 1.5 * (x1 - x0) / frame.plot_w
    parts = _segment_parts(frame, segments)
    ticks = _thin(frame, _speed_ticks(lo, hi, pace))
    parts += _grid_y(frame, ticks, "pace (min/km)" if pace else "speed (km/h)")
    parts.append(_trace_path(frame, trace))
    parts += _level_parts(frame, segments)
    parts += _boundary_parts(frame, boundaries(segments, merge_s))
    parts.append(_axis_x(frame))
    for t in _time_ticks(x1 - x0):
        parts.append(_text(frame.x(x0 + t), frame.floor + 15, _clock(t)))
    parts.append(
        _text(frame.left + frame.plot_w / 2, frame.height - 3, "time since start", cls="axis-title")
    )
    return _svg(frame, "trace", label, parts)


def _trace_legend(steps: bool) -> str:
    exact = (
        '<svg width="14" height="16" aria-hidden="true"><path d="M3,1 L11,1 L7,8 Z" '
        'fill="#37474f"/><line x1="7" x2="7" y1="6" y2="16" stroke="#37474f"/></svg>'
    )
    interp = (
        '<svg width="14" height="16" aria-hidden="true"><path d="M7,1 L11,5 L7,9 L3,5 Z" '
        'fill="#fff" stroke="#d35400" stroke-width="1.5"/><line x1="7" x2="7" y1="9" y2="16" '
        'stroke="#d35400" stroke-dasharray="3 2"/></svg>'
    )
    items = [
        f"<span>{exact}boundary at a recorded sample</span>",
        f"<span>{interp}boundary interpolated between samples</span>",
        '<span><i style="background:#111;height:3px"></i>average of the stretch</span>',
    ]
    if steps:
        items = [
            '<span><i style="background:#43a04755"></i>within target</span>',
            '<span><i style="background:#e5393555"></i>off target</span>',
            '<span><i style="background:#9e9e9e40"></i>no target</span>',
            '<span><i style="background:#2e7d3229;border:1px dashed #2e7d32"></i>'
            "target range</span>",
            *items,
        ]
    return f'<div class="legend">{"".join(items)}</div>'


# ---------------------------------------------------------------------------------------------
# planned vs done


def _plans_section(
    con, tables, user_id: str, sessions: pl.DataFrame
) -> tuple[str, pl.DataFrame | None]:
    plans = _query(con, tables, ["plan_matches"], PLANS_SQL, [user_id])
    if plans is None or plans.is_empty():
        return "<h3>Planned vs done</h3>" + '<p class="empty">no plans</p>', None
    started = _session_starts(sessions)
    counts = plans.group_by("grade").len().sort("grade")
    summary = ", ".join(f"{g}: {n}" for g, n in counts.iter_rows())
    rows = []
    for plan in plans.iter_rows(named=True):
        done = started.get(plan["session_id"]) if plan["session_id"] else None
        link = (
            f'<a href="#{_anchor("plan", plan["planned_session_id"])}">{_e(done or "matched")}</a>'
            if plan["session_id"]
            else "–"
        )
        steps = f"{_e(plan['n_steps_matched'])}/{_e(plan['n_steps'])}"
        rows.append(
            [
                _td(_e(plan["planned_date"])),
                _td(_e(plan["name"])),
                _td(_e(plan["sport"])),
                _td(_e(plan["status"])),
                _td(_grade_badge(plan["grade"])),
                _td(_pct(plan["compliance_pct"]), numeric=True),
                _td(steps, numeric=True),
                _td(link),
                _td(_e(plan["evidence"])),
            ]
        )
    table = _table(
        ["planned", "name", "sport", "status", "grade", "compliance", "steps", "done", "evidence"],
        rows,
        cls="plans",
    )
    intro = f'<p class="note">{len(plans)} planned sessions — {_e(summary)}</p>'
    return f"<h3>Planned vs done</h3>{intro}{table}", plans


def _session_starts(sessions: pl.DataFrame) -> dict[str, str]:
    if sessions.is_empty():
        return {}
    return {
        row["session_id"]: _when(row["start_time_local"], row["start_time_utc"])
        for row in sessions.iter_rows(named=True)
    }


def _step_segments(steps: pl.DataFrame, start: datetime) -> list[Segment]:
    segments = []
    matched = steps.filter(
        pl.col("start_time_utc").is_not_null() & pl.col("end_time_utc").is_not_null()
    )
    for step in _relative(matched, start).iter_rows(named=True):
        state = {True: "in", False: "out"}.get(step["within_target"], "open")
        band = None
        if step["target_type"] == "speed" and _num(step["target_low"]):
            band = (float(step["target_low"]), float(step["target_high"] or step["target_low"]))
        label = f"{step['step_index'] + 1} {step['kind'] or ''}".strip()
        title = (
            f"step {label}: {_clock(step['actual_duration_s'])}, "
            f"{_km(step['actual_distance_m'])}, in target {_pct(step['time_in_target_pct'])}, "
            f"compliance {_pct(step['compliance_pct'])}"
        )
        segments.append(
            Segment(
                start_s=step["start_s"],
                end_s=step["end_s"],
                label=label,
                state=state,
                start_interpolated=bool(step["start_interpolated"]),
                end_interpolated=bool(step["end_interpolated"]),
                title=title,
                band=band,
                level=step["actual_speed_mps"],
            )
        )
    return segments


def _target_text(step: dict, pace: bool) -> str:
    kind = step["target_type"]
    if kind == "speed" and _num(step["target_low"]):
        low, high = step["target_low"], step["target_high"]
        if pace:
            return f"{_pace(high)} – {_pace(low)}"
        return f"{_speed(low, False)} – {_speed(high, False)}"
    if kind == "heart_rate" and _num(step["target_low"]):
        return f"{step['target_low']:.0f}–{step['target_high']:.0f} bpm"
    return kind or "open"


def _planned_text(step: dict) -> str:
    if step["duration_type"] == "distance":
        return _km(step["planned_distance_m"])
    if step["duration_type"] == "time":
        return _clock(step["planned_duration_s"])
    return _e(step["duration_type"] or "open")


def _edge_flag(interpolated: object) -> str:
    if interpolated is None:
        return "–"
    return '<span class="flag">interp.</span>' if interpolated else "sample"


def _steps_table(steps: pl.DataFrame, pace: bool) -> str:
    rows = []
    for step in steps.iter_rows(named=True):
        within = {True: "yes", False: "no"}.get(step["within_target"], "–")
        rows.append(
            [
                _td(_e(step["step_index"] + 1), numeric=True),
                _td(_e(step["kind"])),
                _td(_e(step["name"])),
                _td(_planned_text(step)),
                _td(_e(_target_text(step, pace))),
                _td(_clock(step["actual_duration_s"]), numeric=True),
                _td(_km(step["actual_distance_m"]), numeric=True),
                _td(_speed(step["actual_speed_mps"], pace), numeric=True),
                _td(_e(round(step["actual_avg_hr"])) if _num(step["actual_avg_hr"]) else "–"),
                _td(_pct(step["time_in_target_pct"]), numeric=True),
                _td(within),
                _td(_pct(step["compliance_pct"]), numeric=True),
                _td(
                    f"{_edge_flag(step['start_interpolated'])} / "
                    f"{_edge_flag(step['end_interpolated'])}"
                ),
            ]
        )
    headers = [
        "#",
        "kind",
        "name",
        "planned",
        "target",
        "time",
        "distance",
        "pace" if pace else "speed",
        "HR",
        "in target",
        "within",
        "compliance",
        "start / end",
    ]
    return _table(headers, rows, cls="steps")


def _plan_details(con, tables, user_id: str, plans: pl.DataFrame | None, sessions) -> str:
    head = "<h3>Interval compliance</h3>"
    if plans is None:
        return ""
    matched = plans.filter(pl.col("session_id").is_not_null())
    if matched.is_empty() or sessions.is_empty():
        return head + '<p class="empty">no matched planned sessions</p>'
    if "plan_interval_matches" not in tables:
        return head + '<p class="empty">no step matches in this warehouse</p>'
    shown = matched.tail(MAX_SESSION_CHARTS)
    note = (
        f'<p class="note">the last {MAX_SESSION_CHARTS} of {len(matched)} are shown</p>'
        if len(matched) > len(shown)
        else ""
    )
    by_id = {row["session_id"]: row for row in sessions.iter_rows(named=True)}
    blocks = [
        _plan_block(con, tables, user_id, plan, by_id.get(plan["session_id"]))
        for plan in shown.iter_rows(named=True)
    ]
    return head + _trace_legend(steps=True) + note + "".join(blocks)


def _plan_block(con, tables, user_id: str, plan: dict, session: dict | None) -> str:
    anchor = _anchor("plan", plan["planned_session_id"])
    title = (
        f'<h4 id="{anchor}">{_e(plan["planned_date"])} · {_e(plan["name"])} '
        f"{_grade_badge(plan['grade'])} {_pct(plan['compliance_pct'])}</h4>"
    )
    if session is None:
        return title + '<p class="empty">the matched session is not in the warehouse</p>'
    steps = _query(con, tables, ["plan_interval_matches"], STEPS_SQL, [plan["planned_session_id"]])
    pace = session["family"] in PACE_FAMILIES
    start = session["start_time_utc"]
    meta = (
        f'<p class="meta">done {_e(_when(session["start_time_local"], start))} · '
        f"{_e(session['sport'])} · {_km(session['distance_m'])} · {_clock(session['timer_s'])}"
        f" · step evidence: {_e(plan['evidence'])}</p>"
    )
    if steps is None or steps.is_empty():
        return title + meta + '<p class="empty">no steps</p>'
    samples = _samples(con, tables, plan["session_id"], user_id)
    trace = downsample_trace(samples if samples is not None else pl.DataFrame(), start)
    segments = _step_segments(steps, start)
    if not segments:
        chart = '<p class="empty">no step has matched boundaries to draw</p>'
    elif trace.is_empty():
        chart = '<p class="empty">no samples to draw the steps over</p>'
    else:
        chart = trace_chart(trace, segments, pace, f"steps of {plan['name']}")
    return (
        f'<div class="plan-detail" data-planned-session="{_e(plan["planned_session_id"])}">'
        f'{title}{meta}<div class="chart-block">{chart}</div>{_steps_table(steps, pace)}</div>'
    )


# ---------------------------------------------------------------------------------------------
# sessions and laps


def _sessions_table(sessions: pl.DataFrame, charted: set[str]) -> str:
    """Newest first, at most MAX_SESSION_ROWS (a report, not an export)."""
    rows = []
    for s in sessions.reverse().head(MAX_SESSION_ROWS).iter_rows(named=True):
        pace = s["family"] in PACE_FAMILIES
        speed = (
            s["distance_m"] / s["timer_s"]
            if _num(s["distance_m"]) and _num(s["timer_s"]) and s["timer_s"] > 0
            else None
        )
        when = _e(_when(s["start_time_local"], s["start_time_utc"]))
        if s["session_id"] in charted:
            when = f'<a href="#{_anchor("session", s["session_id"])}">{when}</a>'
        rows.append(
            [
                _td(when),
                _td(_e(s["sport"])),
                _td(_km(s["distance_m"]), numeric=True),
                _td(_clock(s["timer_s"]), numeric=True),
                _td(_speed(speed, pace) if speed else "–", numeric=True),
                _td(_e(round(s["avg_hr"])) if _num(s["avg_hr"]) else "–", numeric=True),
                _td(_e(s["n_laps"]), numeric=True),
                _td(_e(s["source"])),
            ]
        )
    headers = ["start", "sport", "distance", "timer", "pace / speed", "avg HR", "laps", "source"]
    note = (
        f'<p class="note">the newest {MAX_SESSION_ROWS} of {len(sessions)} are listed</p>'
        if len(sessions) > MAX_SESSION_ROWS
        else ""
    )
    return note + _table(headers, rows, cls="sessions")


def _lap_segments(laps: pl.DataFrame, start: datetime) -> list[Segment]:
    segments = []
    timed = laps.filter(
        pl.col("start_time_utc").is_not_null() & pl.col("end_time_utc").is_not_null()
    )
    for lap in _relative(timed, start).iter_rows(named=True):
        number = lap["interval_index"] + 1
        title = (
            f"lap {number}: {_km(lap['distance_m'])} in {_clock(lap['timer_s'])}, "
            f"{_pace(lap['avg_speed_mps'])}, {_e(lap['lap_trigger'])}"
        )
        segments.append(
            Segment(
                start_s=lap["start_s"],
                end_s=lap["end_s"],
                label=f"lap {number}",
                state="even" if number % 2 == 0 else "odd",
                start_interpolated=bool(lap["start_interpolated"]),
                end_interpolated=bool(lap["end_interpolated"]),
                title=title,
                level=lap["avg_speed_mps"],
            )
        )
    return segments


def _laps_table(laps: pl.DataFrame, start: datetime, pace: bool) -> str:
    rows = []
    for lap in _relative(laps, start).iter_rows(named=True):
        flags = []
        if lap["start_out_of_range"] or lap["end_out_of_range"]:
            flags.append('<span class="flag">outside samples</span>')
        rows.append(
            [
                _td(_e(lap["interval_index"] + 1), numeric=True),
                _td(_clock(lap["start_s"]), numeric=True),
                _td(_km(lap["distance_m"]), numeric=True),
                _td(_clock(lap["timer_s"]), numeric=True),
                _td(_speed(lap["avg_speed_mps"], pace), numeric=True),
                _td(_e(round(lap["avg_hr"])) if _num(lap["avg_hr"]) else "–", numeric=True),
                _td(
                    f"{_edge_flag(lap['start_interpolated'])} / "
                    f"{_edge_flag(lap['end_interpolated'])}"
                ),
                _td(" ".join(flags) or "–"),
                _td(_e(lap["lap_trigger"])),
            ]
        )
    headers = [
        "lap",
        "at",
        "distance",
        "timer",
        "pace" if pace else "speed",
        "avg HR",
        "start / end",
        "flags",
        "trigger",
    ]
    return _table(headers, rows, cls="laps")


def _session_block(con, tables, user_id: str, session: dict) -> str:
    """One recorded session: its laps over its trace, or the trace alone when it has none."""
    start = session["start_time_utc"]
    pace = session["family"] in PACE_FAMILIES
    laps = _query(con, tables, ["intervals"], LAPS_SQL, [session["session_id"]])
    laps = laps if laps is not None else pl.DataFrame()
    samples = _samples(con, tables, session["session_id"], user_id)
    trace = downsample_trace(samples if samples is not None else pl.DataFrame(), start)
    segments = _lap_segments(laps, start) if not laps.is_empty() else []
    title = (
        f'<h4 id="{_anchor("session", session["session_id"])}">'
        f"{_e(_when(session['start_time_local'], start))} · {_e(session['sport'])} · "
        f"{_km(session['distance_m'])} · {_clock(session['timer_s'])}</h4>"
    )
    chart = (
        f'<div class="chart-block">'
        f"{trace_chart(trace, segments, pace, 'laps of ' + str(session['sport']))}</div>"
        if not trace.is_empty()
        else '<p class="empty">no samples to draw</p>'
    )
    table = _laps_table(laps, start, pace) if not laps.is_empty() else ""
    return (
        f'<div class="session-detail" data-session="{_e(session["session_id"])}">'
        f"{title}{chart}{table}</div>"
    )


def _sessions_section(con, tables, user_id: str, sessions: pl.DataFrame) -> str:
    head = "<h3>Sessions</h3>"
    if sessions.is_empty():
        return head + '<p class="empty">no sessions</p>'
    drawable = _drawable_sessions(con, tables, user_id)
    chosen = sessions.filter(pl.col("session_id").is_in(drawable)).tail(MAX_SESSION_CHARTS)
    charted = set(chosen["session_id"].to_list())
    details = "".join(
        _session_block(con, tables, user_id, row) for row in chosen.reverse().iter_rows(named=True)
    )
    laps_head = "<h3>Laps</h3>"
    if not details:
        details = '<p class="empty">no sessions with laps or samples</p>'
    else:
        details = _trace_legend(steps=False) + details
    return head + _sessions_table(sessions, charted) + laps_head + details


def _drawable_sessions(con, tables, user_id: str) -> list[str]:
    """Sessions with laps or samples: the only ones a trace chart or lap table can show."""
    found: set[str] = set()
    for table in ("intervals", "samples"):
        frame = _query(
            con,
            tables,
            [table],
            # Fixed table name only; the user id is bound.
            f"SELECT DISTINCT session_id FROM {table} WHERE user_id = ?",
            [user_id],
        )
        if frame is not None:
            found.update(frame["session_id"].to_list())
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# athlete section


def _athlete_section(con, tables, user_id: str) -> str:
    sessions = _sessions(con, tables, user_id)
    plans_html, plans = _plans_section(con, tables, user_id, sessions)
    parts = [
        f'<section class="athlete" id="{_anchor("athlete", user_id)}" '
        f'data-user-id="{_e(user_id)}">',
        f"<h2>Athlete {_e(user_id)}</h2>",
        f'<p class="meta">{len(sessions)} session{"s" if len(sessions) != 1 else ""}</p>',
        _volume_section(sessions),
        plans_html,
        _plan_details(con, tables, user_id, plans, sessions),
        _sessions_section(con, tables, user_id, sessions),
        "</section>",
    ]
    return "\n".join(parts)
