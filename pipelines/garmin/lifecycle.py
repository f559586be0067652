"""User lifecycle: permission changes (what may be ingested) and the users table."""

from __future__ import annotations

import polars as pl


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
