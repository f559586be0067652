"""Window operations on a frame sorted by an integer group key, without hashing groups.

``expr.shift().over(key)`` builds a hash table of groups per expression; on a frame already
sorted by its key, comparing the key with its neighbour does the same job in one pass. These
helpers assume exactly that sort order.
"""

from __future__ import annotations

import polars as pl

KEY = "_key"


def int_key(column: str) -> pl.Expr:
    """A compact integer for a string id (the categorical code), cheap to sort and compare."""
    return pl.col(column).cast(pl.Categorical).to_physical().cast(pl.Int64)


def first_of_group(key: str = KEY) -> pl.Expr:
    return (pl.col(key) != pl.col(key).shift(1)).fill_null(True)


def prev(expr: pl.Expr, key: str = KEY) -> pl.Expr:
    return pl.when(pl.col(key) == pl.col(key).shift(1)).then(expr.shift(1))


def next_(expr: pl.Expr, key: str = KEY) -> pl.Expr:
    return pl.when(pl.col(key) == pl.col(key).shift(-1)).then(expr.shift(-1))


def ffill(expr: pl.Expr, key: str = KEY) -> pl.Expr:
    """Forward fill that never crosses into the next group."""
    owner = pl.when(expr.is_not_null()).then(pl.col(key)).forward_fill()
    return pl.when(owner == pl.col(key)).then(expr.forward_fill())


def bfill(expr: pl.Expr, key: str = KEY) -> pl.Expr:
    owner = pl.when(expr.is_not_null()).then(pl.col(key)).backward_fill()
    return pl.when(owner == pl.col(key)).then(expr.backward_fill())


def cumsum(expr: pl.Expr, key: str = KEY) -> pl.Expr:
    """Cumulative sum restarting at each group (nulls count as 0)."""
    values = expr.fill_null(0.0)
    total = values.cum_sum()
    start = pl.when(first_of_group(key)).then(total - values).forward_fill()
    return total - start
