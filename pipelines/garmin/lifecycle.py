"""User lifecycle: permission changes (what may be ingested) and the users table."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import polars as pl

from pipelines.lake.io import write_parquet_atomic
from pipelines.lake.layout import LakeLayout
from pipelines.lake.partitions import bronze_part_hashes, index_path


def permission_changes(changes: pl.LazyFrame) -> pl.LazyFrame:
    """One row per change: user, when (the change time, else when we received it), what."""
    return changes.select(
        "user_id",
        pl.coalesce("start_time_utc", "received_at").alias("changed_at"),
        "permissions",
    ).sort("changed_at")


def filter_permitted(
    frame: pl.LazyFrame, changes: pl.LazyFrame, permission: str | None, time_column: str
) -> pl.LazyFrame:
    """Drop rows dated at or after a permission change that no longer lists ``permission``.

    Adds nothing; rows of users who never changed permissions are kept."""
    if permission is None:
        return frame
    when = pl.coalesce(time_column, "received_at")
    joined = (
        frame.with_columns(when.alias("_at"))
        .sort("_at")
        .join_asof(
            changes.rename({"changed_at": "_changed_at", "permissions": "_permissions"}),
            left_on="_at",
            right_on="_changed_at",
            by="user_id",
            strategy="backward",
            check_sortedness=False,
        )
    )
    allowed = pl.col("_changed_at").is_null() | pl.col("_permissions").list.contains(permission)
    return joined.filter(allowed).drop("_at", "_changed_at", "_permissions")


def users_table(seen: pl.LazyFrame, changes: pl.LazyFrame, erasures: pl.LazyFrame) -> pl.LazyFrame:
    """Active users with their current permissions, plus one row per erased user (hashed)."""
    latest = (
        changes.sort("changed_at")
        .group_by("user_id")
        .agg(
            pl.col("permissions").last(),
            pl.col("changed_at").last().alias("permissions_changed_at"),
        )
    )
    active = (
        seen.group_by("user_id")
        .agg(
            pl.col("received_at").min().alias("first_received_at"),
            pl.col("received_at").max().alias("last_received_at"),
        )
        .join(latest, on="user_id", how="left")
        .with_columns(
            pl.lit("active").alias("status"),
            pl.lit(None, pl.String).alias("user_id_sha256"),
            pl.lit(None, pl.Datetime("us", "UTC")).alias("deregistered_at"),
        )
    )
    erased = erasures.select(
        pl.lit(None, pl.String).alias("user_id"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("first_received_at"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("last_received_at"),
        pl.lit(None, pl.List(pl.String)).alias("permissions"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("permissions_changed_at"),
        pl.lit("deregistered").alias("status"),
        "user_id_sha256",
        "deregistered_at",
    )
    return pl.concat([active.select(erased.collect_schema().names()), erased])


SEEN_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "first_received_at": pl.Datetime("us", "UTC"),
    "last_received_at": pl.Datetime("us", "UTC"),
}


def refresh_seen(
    previous: pl.DataFrame | None,
    counted: set[str],
    present: set[str],
    read: Callable[[str, set[str]], pl.LazyFrame],
    tables: Iterable[str],
) -> tuple[pl.DataFrame, set[str]]:
    """First and last delivery per user, reading only bronze parts not counted yet.

    Returns the new summary and the parts it counts. ``previous`` is dropped when a part it
    counted is gone (an erasure rewrote bronze)."""
    keep = previous is not None and counted <= present
    new = present - counted if keep else present
    frames = [previous.lazy()] if keep and previous is not None else []
    frames += [
        read(table, new).select(
            "user_id",
            pl.col("received_at").alias("first_received_at"),
            pl.col("received_at").alias("last_received_at"),
        )
        for table in (tables if new else ())
    ]
    if not frames:
        return pl.DataFrame(schema=SEEN_SCHEMA), set()
    seen = (
        pl.concat([f.select([pl.col(c).cast(t) for c, t in SEEN_SCHEMA.items()]) for f in frames])
        .group_by("user_id")
        .agg(pl.col("first_received_at").min(), pl.col("last_received_at").max())
        .sort("user_id")
        .collect()
    )
    return seen, (counted | new) if keep else set(present)


def refresh_users_seen(
    layout: LakeLayout, tables: Iterable[str], read: Callable[[str, set[str]], pl.LazyFrame]
) -> pl.DataFrame:
    """refresh_seen over the stored summary (``silver/_index/users_seen*``), stored again."""
    seen_path = index_path(layout, "users_seen")
    parts_path = index_path(layout, "users_seen_parts")
    stored = seen_path.exists() and parts_path.exists()
    seen, counted = refresh_seen(
        pl.read_parquet(seen_path) if stored else None,
        set(pl.read_parquet(parts_path).get_column("source_sha256")) if stored else set(),
        bronze_part_hashes(layout, tables),
        read,
        tables,
    )
    # Summary first, parts last: a crash between them only means parts are counted again
    # (first/last are a min and a max: counting twice changes nothing).
    write_parquet_atomic(seen, seen_path)
    counted_frame = pl.DataFrame(
        {"source_sha256": sorted(counted)}, schema={"source_sha256": pl.String()}
    )
    write_parquet_atomic(counted_frame, parts_path)
    return seen


def seen_deliveries(seen: pl.DataFrame) -> pl.LazyFrame:
    """(user_id, received_at) rows for users_table from the per-user summary."""
    return pl.concat(
        [
            seen.lazy().select("user_id", pl.col(column).alias("received_at"))
            for column in ("first_received_at", "last_received_at")
        ]
    )
