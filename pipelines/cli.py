"""`wearhouse`: run the asset graph in-process, or set up and run the bundled demo."""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import shutil
import sys
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import dagster as dg
import duckdb

from pipelines.fit.importer import ImportProblem, import_fit
from pipelines.settings import Settings
from pipelines.training.cli import add_garmin_parser, run_garmin

EXAMPLE_QUERY = (
    "SELECT s.sport, s.start_time_local, i.interval_index, round(i.distance_m, 1) AS m, "
    "round(i.avg_pace_s_per_km) AS pace_s_km FROM intervals i JOIN sessions s USING "
    "(session_id) ORDER BY s.start_time_utc, i.interval_index LIMIT 10"
)


def _add_location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        help="folder holding landing/, lake/, warehouse.duckdb "
        "(env WEARHOUSE_HOME; default ./wearhouse-home)",
    )
    parser.add_argument("--landing", help="landing folder (env WEARHOUSE_LANDING)")
    parser.add_argument("--lake", help="Parquet lake folder (env WEARHOUSE_LAKE)")
    parser.add_argument("--duckdb", help="warehouse file (env WEARHOUSE_DUCKDB)")


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.resolve(args.home, args.landing, args.lake, args.duckdb)
    settings.ensure_dirs()
    # Same values for anything that resolves settings again (sensors, nested code).
    os.environ.update(settings.as_environ())
    return settings


@contextmanager
def _instance():
    """The persistent instance when DAGSTER_HOME is set (runs show in the UI), else ephemeral."""
    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as instance:
            yield instance
    else:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance


@contextmanager
def _exclusive_run(settings: Settings):
    """One run at a time per lake: a second `wearhouse run` waits for the first (runs launched
    by the Dagster daemon are serialized by the run queue instead, see README)."""
    settings.lake.mkdir(parents=True, exist_ok=True)
    with (settings.lake / ".wearhouse-run.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("wearhouse: another run is using this lake; waiting…", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_pipeline(settings: Settings, out=None, log_level: str = "WARNING") -> bool:
    """Materialize every asset through the code location's definitions; print a summary."""
    out = out or sys.stdout
    with _exclusive_run(settings):
        return _run_pipeline(settings, out, log_level)


def _run_pipeline(settings: Settings, out, log_level: str) -> bool:
    from pipelines.definitions import build_definitions

    defs = build_definitions(settings)
    job = defs.resolve_job_def("wearhouse_job")
    with _instance() as instance:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
    if not result.success:
        for event in result.all_events:
            if event.is_failure and event.step_key:
                print(f"FAILED {event.step_key}: {_failure_cause(event)}", file=sys.stderr)
        return False
    checks = result.get_asset_check_evaluations()
    print_summary(settings, checks, out)
    return True


def _failure_cause(event) -> str:
    """The error a failed step raised under Dagster's wrapping (an OS error such as a full
    disk, say), or Dagster's own message when there is none."""
    data = event.step_failure_data if event.is_step_failure else None
    error = data.error if data is not None else None
    while error is not None and error.cls_name.startswith("Dagster") and error.cause:
        error = error.cause
    return error.message.strip() if error is not None else event.message


def print_summary(settings: Settings, checks, out=None) -> None:
    out = out or sys.stdout
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_type = 'BASE TABLE' ORDER BY table_name"
        ).fetchall()
        views = [
            name
            for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                "AND table_type = 'VIEW' ORDER BY table_name"
            ).fetchall()
        ]
        print(f"wearhouse: warehouse at {settings.duckdb}", file=out)
        print(f"  lake at {settings.lake}; landing at {settings.landing}", file=out)
        print("  rows per table:", file=out)
        for (table,) in tables:
            (rows,) = con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0]
            print(f"    {table:<20} {rows:>10,}", file=out)
        print(f"  views: {', '.join(views)}", file=out)
        quarantined = con.execute(
            "SELECT input_path, stage, item_index, reason FROM quarantine ORDER BY input_path"
        ).fetchall()
    if quarantined:
        print(f"  quarantined ({len(quarantined)}):", file=out)
        for path, stage, item, reason in quarantined:
            where = path if item is None else f"{path} item {item}"
            print(f"    {where} [{stage}]: {reason}", file=out)
    else:
        print("  quarantined: none", file=out)
    failed = [c for c in checks if not c.passed]
    print(f"  asset checks: {len(checks) - len(failed)}/{len(checks)} passed", file=out)
    for check in failed:
        print(
            f"    {check.asset_key.to_user_string()}.{check.check_name}: {check.severity.value}",
            file=out,
        )
        for key, entry in check.metadata.items():
            print(f"      {key}: {json.dumps(entry.value, default=str)}", file=out)
    print("  try:", file=out)
    # Say how to call us as the user can: by name when on PATH, else by the path they used.
    command = "wearhouse" if shutil.which("wearhouse") else sys.argv[0]
    print(f'    {command} sql --home {settings.home} "{EXAMPLE_QUERY}"', file=out)


def copy_sample_data(landing: Path) -> int:
    """Copy the bundled sample landing files (never overwriting what is there)."""
    source = resources.files("pipelines") / "sample_data" / "landing"
    copied = 0
    with resources.as_file(source) as folder:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and path.name != "README.md":
                target = landing / path.relative_to(folder)
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
                    copied += 1
    return copied


def _progress(count: int, where: str) -> None:
    name = where.rsplit("/", 1)[-1][-50:]
    print(f"\r  scanning: {count:>6} files  {name:<50}", end="", file=sys.stderr, flush=True)


def run_import(settings: Settings, source: Path, user_id: str, out=None) -> int:
    out = out or sys.stdout
    try:
        report = import_fit(source, settings.landing, user_id, progress=_progress)
    except ImportProblem as exc:
        print(f"wearhouse import: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    ok = run_pipeline(settings, out=io.StringIO())
    quarantined = []
    if ok and report.imported:
        with duckdb.connect(str(settings.duckdb), read_only=True) as con:
            quarantined = con.execute(
                "SELECT input_path, reason FROM quarantine WHERE list_contains(?, input_path)",
                [report.imported],
            ).fetchall()
    print(
        f"wearhouse import: {report.found} FIT files found, {len(report.imported)} imported, "
        f"{report.duplicates} duplicates, {len(quarantined)} quarantined, "
        f"{len(report.skipped)} unreadable",
        file=out,
    )
    for path, reason in quarantined:
        print(f"  quarantined {path}: {reason}", file=out)
    for problem in report.skipped:
        print(f"  unreadable {problem}", file=out)
    return 0 if ok else 1


def run_report(settings: Settings, out_path: Path | None, user_id: str | None) -> int:
    from pipelines.report import write_report

    if not settings.duckdb.exists():
        print(f"no warehouse at {settings.duckdb}: run `wearhouse run` first", file=sys.stderr)
        return 1
    path = write_report(settings.duckdb, out_path or settings.home / "report.html", user_id)
    print(f"wearhouse: report written to {path}")
    return 0


def run_query(settings: Settings, query: str, out=None) -> int:
    """Print a query's result as an aligned table (read-only: runs can go on meanwhile)."""
    out = out or sys.stdout
    if not settings.duckdb.exists():
        print(f"no warehouse at {settings.duckdb}: run `wearhouse run` first", file=sys.stderr)
        return 1
    with duckdb.connect(str(settings.duckdb), read_only=True) as con:
        try:
            print(con.sql(query), file=out)
        except duckdb.Error as exc:
            print(f"query failed: {exc}", file=sys.stderr)
            return 1
    return 0


def run_quarantine(
    settings: Settings, action: str, stage: str | None, inputs: list[str], rerun: bool, out=None
) -> int:
    """List what is quarantined and why, or release inputs so the next run takes them again
    (after a fix of the code)."""
    from pipelines.garmin.ping import STAGE as PING_STAGE
    from pipelines.garmin.ping import reopen_failed_items
    from pipelines.lake.layout import LakeLayout
    from pipelines.lake.ledger import LEDGER_STAGE
    from pipelines.lake.quarantine import read_quarantine, release

    out = out or sys.stdout
    layout = LakeLayout(settings.lake)
    records = read_quarantine(layout).sort("quarantined_at", "input_path", "item_index")
    if stage:
        records = records.filter(records["stage"] == stage)
    if inputs:
        records = records.filter(records["input_path"].is_in(inputs))
    if action == "list":
        for row in records.iter_rows(named=True):
            where = row["input_path"]
            if row["item_index"] is not None:
                where += f" item {row['item_index']}"
            print(
                f"{row['quarantined_at']:%Y-%m-%d %H:%M:%S}  [{row['stage']}] {where}: "
                f"{row['reason']}",
                file=out,
            )
        inputs_count = records.select("stage", "input_sha256").n_unique()
        print(f"{records.height} quarantine records, {inputs_count} inputs", file=out)
        return 0
    released, kept = 0, []
    for row in records.unique(["stage", "input_sha256"]).sort("input_path").iter_rows(named=True):
        if row["stage"] == LEDGER_STAGE:
            # Nothing to re-run: the file itself must change (it clears its record then).
            kept.append(f"{row['input_path']}: fix or replace the file in landing")
            continue
        if row["stage"] == PING_STAGE:
            reopen_failed_items(layout, row["input_sha256"])
        released += release(layout, row["stage"], row["input_sha256"])
    print(f"wearhouse quarantine: {released} inputs released for the next run", file=out)
    for line in kept:
        print(f"  kept {line}", file=out)
    if rerun and released:
        return 0 if run_pipeline(settings, out=out) else 1
    return 0


def run_serve(settings: Settings, host: str, port: int) -> int:
    from pipelines.receiver.config import ConfigError, ReceiverConfig
    from pipelines.receiver.server import serve

    try:
        config = ReceiverConfig.resolve(settings.landing)
    except ConfigError as exc:
        print(f"wearhouse serve: {exc}", file=sys.stderr)
        return 2
    return serve(config, host, port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wearhouse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="materialize everything for what is in landing")
    _add_location_options(run)
    demo = commands.add_parser("demo", help="copy the bundled sample data to landing and run")
    _add_location_options(demo)
    imp = commands.add_parser(
        "import", help="import a folder of FIT files or a Garmin Connect export zip, then run"
    )
    imp.add_argument("path", type=Path, help="folder, .fit/.fit.gz file, or export .zip")
    imp.add_argument("--user", required=True, help="the athlete's user id")
    _add_location_options(imp)
    rep = commands.add_parser("report", help="write a self-contained HTML training report")
    rep.add_argument("--user", help="only this athlete (default: everyone)")
    rep.add_argument("--out", type=Path, help="output file (default: <home>/report.html)")
    _add_location_options(rep)
    qua = commands.add_parser(
        "quarantine", help="list quarantined inputs and why, or retry them after a fix"
    )
    qua.add_argument("action", nargs="?", choices=("list", "retry"), default="list")
    qua.add_argument("--stage", help="only this stage (ledger, fit, garmin_push, plans, …)")
    qua.add_argument("--input", action="append", default=[], help="only this landing path")
    qua.add_argument(
        "--no-run", action="store_true", help="retry: release only, run later (default: run now)"
    )
    _add_location_options(qua)
    srv = commands.add_parser(
        "serve", help="the Garmin webhook receiver (writes bodies to landing, docs/receiver.md)"
    )
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    _add_location_options(srv)
    add_garmin_parser(commands, _add_location_options)
    sql = commands.add_parser("sql", help="run a read-only SQL query on the warehouse")
    sql.add_argument("query")
    _add_location_options(sql)
    args = parser.parse_args(argv)

    settings = _settings(args)
    if args.command == "garmin":
        return run_garmin(args, settings)
    if args.command == "serve":
        return run_serve(settings, args.host, args.port)
    if args.command == "sql":
        return run_query(settings, args.query)
    if args.command == "import":
        return run_import(settings, args.path, args.user)
    if args.command == "report":
        return run_report(settings, args.out, args.user)
    if args.command == "quarantine":
        return run_quarantine(settings, args.action, args.stage, args.input, not args.no_run)
    if args.command == "demo":
        copied = copy_sample_data(settings.landing)
        print(f"wearhouse demo: {copied} sample files copied into {settings.landing}")
    ok = run_pipeline(settings)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
