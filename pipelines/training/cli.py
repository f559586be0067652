"""`wearhouse garmin …`: push plans to Garmin, connect and disconnect users, backfill.

``add_garmin_parser`` builds the sub-commands; ``run_garmin`` runs one. Exit codes: 0 when
the run itself worked (sessions that failed or were refused are reported, and retried by the
next run), 2 for a configuration problem, 1 when the run failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from datetime import date, timedelta
from typing import TextIO

from pipelines.settings import Settings
from pipelines.training import oauth
from pipelines.training.backfill import BackfillError, run_backfill
from pipelines.training.client import ApiError
from pipelines.training.config import ConfigError, TrainingConfig
from pipelines.training.service import DEFAULT_DAYS_AHEAD, Parts, push_plans
from pipelines.training.tokens import TokenStoreError
from pipelines.training.users import (
    UserIdError,
    checked_user_id,
    delete_registration,
    fetch_user_id,
    land_deregistration,
    purge_users,
    refresh_permissions,
)


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def add_garmin_parser(
    commands: argparse._SubParsersAction,
    add_location_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    garmin = commands.add_parser(
        "garmin", help="the outbound side: plans to the watch, connections, backfill"
    )
    sub = garmin.add_subparsers(dest="garmin_command", required=True)
    push = sub.add_parser(
        "push-plans", help="send planned sessions to Garmin as workouts and schedules"
    )
    push.add_argument("--user", help="only this user (default: every user with a token)")
    push.add_argument("--from", dest="start", type=_date, help="first date (default: today)")
    push.add_argument("--to", dest="end", type=_date, help="last date (default: +28 days)")
    push.add_argument("--dry-run", action="store_true", help="say what would be sent; send nothing")
    push.add_argument(
        "--verify", action="store_true", help="also check that synced workouts still exist"
    )
    connect = sub.add_parser("connect", help="print the authorization URL for a user (PKCE)")
    connect.add_argument("--user", required=True, help="the athlete's user id in wearhouse")
    callback = sub.add_parser("callback", help="complete a connection with Garmin's redirect")
    callback.add_argument("--state", required=True)
    callback.add_argument("--code", required=True)
    disconnect = sub.add_parser(
        "disconnect", help="delete the user's registration at Garmin, then erase the user"
    )
    disconnect.add_argument("--user", required=True)
    backfill = sub.add_parser("backfill", help="ask Garmin to re-send historical data")
    backfill.add_argument("--user", required=True)
    backfill.add_argument("--type", required=True, dest="summary_type", help="e.g. activities")
    backfill.add_argument("--from", dest="start", type=_date, required=True)
    backfill.add_argument("--to", dest="end", type=_date, required=True)
    for parser in (push, connect, callback, disconnect, backfill):
        add_location_options(parser)


def run_garmin(
    args: argparse.Namespace,
    settings: Settings,
    out: TextIO | None = None,
    config: TrainingConfig | None = None,
) -> int:
    out = out or sys.stdout
    name = f"wearhouse garmin {args.garmin_command}"
    try:
        config = config or TrainingConfig.resolve(settings.home)
        parts = Parts(settings, config)
        command = {
            "push-plans": _push_plans,
            "connect": _connect,
            "callback": _callback,
            "disconnect": _disconnect,
            "backfill": _backfill,
        }[args.garmin_command]
        return command(parts, args, out, name)
    except (ConfigError, TokenStoreError, UserIdError, BackfillError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except (oauth.OAuthError, ApiError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1


def _push_plans(parts: Parts, args: argparse.Namespace, out: TextIO, name: str) -> int:
    start = args.start or date.today()
    end = args.end or start + timedelta(days=DEFAULT_DAYS_AHEAD)
    if end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    user = checked_user_id(args.user) if args.user else None
    report = push_plans(parts, start, end, user, dry_run=args.dry_run, verify=args.verify)
    print(f"{name} {start}..{end}: " + "\n".join(report.lines()), file=out)
    return 0


def _connect(parts: Parts, args: argparse.Namespace, out: TextIO, name: str) -> int:
    user = checked_user_id(args.user)
    url, state = oauth.start(parts.config, parts.require_store(), user)
    print(f"Open this URL to connect user {user} to Garmin:\n  {url}", file=out)
    print(
        "Garmin then redirects to the redirect URI with ?code=…&state=…; complete with\n"
        f"  wearhouse garmin callback --state {state} --code CODE",
        file=out,
    )
    return 0


def _callback(parts: Parts, args: argparse.Namespace, out: TextIO, name: str) -> int:
    store = parts.require_store()
    user = oauth.complete(parts.config, store, args.state, args.code)
    print(f"{name}: user {user} connected", file=out)
    try:
        with parts.client() as client:
            garmin_id = fetch_user_id(client, user)
            permissions = refresh_permissions(parts.layout, client, user)
    except ApiError as exc:
        print(f"  could not read the user id and permissions yet: {exc}", file=out)
        return 0
    tokens = store.get(user)
    if tokens is not None and garmin_id:
        store.put(user, dataclasses.replace(tokens, garmin_user_id=garmin_id))
    print(
        f"  Garmin user id: {garmin_id}; permissions: {', '.join(permissions) or 'none'}", file=out
    )
    if garmin_id and garmin_id != user:
        print(
            f"  note: Garmin's pushes name this user {garmin_id}; plans in landing/plans/{user}/ "
            "are matched to activities of that id only if the two are the same",
            file=out,
        )
    return 0


def _disconnect(parts: Parts, args: argparse.Namespace, out: TextIO, name: str) -> int:
    user = checked_user_id(args.user)
    with parts.client() as client:
        delete_registration(client, user)
    notice = land_deregistration(parts.settings.landing, user)
    if parts.store is not None:
        parts.store.delete(user)
    purge_users(parts.layout, [user])
    print(
        f"{name}: user {user} disconnected; deregistration notice landed at "
        f"{notice.relative_to(parts.settings.landing)}: the next `wearhouse run` erases the "
        "user's data",
        file=out,
    )
    return 0


def _backfill(parts: Parts, args: argparse.Namespace, out: TextIO, name: str) -> int:
    user = checked_user_id(args.user)
    with parts.client() as client:
        report = run_backfill(parts.layout, client, user, args.summary_type, args.start, args.end)
    print(
        f"{name} {args.summary_type} {args.start}..{args.end}: " + "\n".join(report.lines()),
        file=out,
    )
    return 0
