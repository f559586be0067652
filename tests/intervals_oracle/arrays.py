"""Interval metrics on whole numpy columns: sorted check, segmented searches, range reductions.

The samples are one array per column, sorted by (session, time) with each session one
contiguous run of rows. An interval of a session is a row range found by binary search; its
metrics are range reductions over per-sample segment values (``np.add.reduceat`` /
``np.fmax.reduceat``, integer sums for counts) plus the two partial segments cut by its
boundaries. Nothing loops per session, interval or sample in Python: the only loops are over
columns, storage chunks, windows and blocks of ~2^19 rows, and the ~log2(samples per session)
steps of the vectorized binary search.

Nulls are NaN here: a NaN in the input counts as missing (the Polars method told a NaN from a
null; FIT and API decoders give nulls).
"""

from __future__ import annotations

import numpy as np
import polars as pl

WINDOW_ROWS = 1 << 19  # rows per window of the one-pass order checks


def runs(session_id: pl.Series, t: pl.Series) -> tuple[np.ndarray, bool]:
    """Row index where each run of equal ``session_id`` starts, and whether the rows are
    sorted as the interval code needs: every session one run, time strictly increasing in it.
    O(n) comparisons in windows, no sort and no hashing of the rows (only of the run starts)."""
    n = len(t)
    if n == 0:
        return np.zeros(0, np.int64), True
    change = _changes(session_id)
    starts = np.flatnonzero(change)
    contiguous = session_id.gather(starts).n_unique() == len(starts)
    return starts, contiguous and steps_hold(t, change, np.less)


def steps_hold(values: pl.Series, change: np.ndarray, rule) -> bool:
    """``rule(previous, current)`` holds for every row but a session's first, checked in
    windows of WINDOW_ROWS rows (numpy views of the column where its chunks allow)."""
    n = len(values)
    for w0 in range(1, n, WINDOW_ROWS):
        w1 = min(w0 + WINDOW_ROWS, n)
        v = values.slice(w0 - 1, w1 - w0 + 1).to_numpy()
        if not np.all(rule(v[:-1], v[1:]) | change[w0:w1]):
            return False
    return True


def session_blocks(starts: np.ndarray, n: int, size: int) -> np.ndarray:
    """Cut points (row indices, from 0 to n) between blocks of whole sessions of about
    ``size`` rows (a longer session is a block of its own); [0, 0] when there are no rows."""
    if n == 0:
        return np.array([0, 0])
    cuts = np.unique(starts[np.searchsorted(starts, np.arange(0, n, size), "right") - 1])
    return np.append(cuts, n)


def _changes(session_id: pl.Series) -> np.ndarray:
    """Row differs from the previous one (the first row: True). Compared chunk by chunk:
    comparing two slices whose chunks do not line up makes Polars rechunk the string column
    (a copy as large as the column)."""
    n = len(session_id)
    change = np.empty(n, bool)
    chunks = session_id.get_chunks() if session_id.n_chunks() <= 256 else [session_id.rechunk()]
    at = 0
    previous = None
    for chunk in chunks:
        m = len(chunk)
        if m == 0:
            continue
        first = chunk[0]
        change[at] = previous is None or first != previous
        if m > 1:
            change[at + 1 : at + m] = chunk.slice(1).ne_missing(chunk.slice(0, m - 1)).to_numpy()
        previous = chunk[m - 1]
        at += m
    return change


def search_left(t: np.ndarray, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """First index in [lo, hi) with ``t >= x`` (``hi`` if none), per element: a binary search
    vectorized over all queries at once (``t`` sorted within each [lo, hi))."""
    lo = lo.astype(np.int64, copy=True)
    hi = hi.astype(np.int64, copy=True)
    active = np.flatnonzero(lo < hi)
    while len(active):
        a_lo, a_hi = lo[active], hi[active]
        mid = (a_lo + a_hi) // 2
        go = t[mid] < x[active]
        a_lo = np.where(go, mid + 1, a_lo)
        a_hi = np.where(go, a_hi, mid)
        lo[active], hi[active] = a_lo, a_hi
        active = active[a_lo < a_hi]
    return lo


def gather(values: np.ndarray, index: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``values[index]`` where ``ok``, NaN elsewhere."""
    if len(values) == 0:
        return np.full(len(index), np.nan)
    out = values[np.clip(index, 0, len(values) - 1)]
    return np.where(ok, out, np.nan)


def valid_before(valid: np.ndarray | None, index, ok, lo):
    """Per query: the last row ≤ ``index`` (and ≥ the session's ``lo``) where ``valid``; ``ok``
    says whether there is one. ``valid`` None means every row is valid."""
    if valid is None:
        return index, ok
    rows = np.flatnonzero(valid)
    k = np.searchsorted(rows, index, side="right") - 1
    found = rows[np.clip(k, 0, max(len(rows) - 1, 0))] if len(rows) else np.zeros_like(index)
    return found, ok & (k >= 0) & (found >= lo)


def valid_after(valid: np.ndarray | None, index, ok, hi):
    """Per query: the first row ≥ ``index`` (and < the session's ``hi``) where ``valid``."""
    if valid is None:
        return index, ok
    rows = np.flatnonzero(valid)
    k = np.searchsorted(rows, index, side="left")
    found = rows[np.clip(k, 0, max(len(rows) - 1, 0))] if len(rows) else np.zeros_like(index)
    return found, ok & (k < len(rows)) & (found < hi)


def _reduce_ranges(ufunc, x: np.ndarray, s: np.ndarray, e: np.ndarray, empty, dtype=np.float64):
    """``ufunc.reduce(x[s:e])`` per range, ``empty`` where the range is empty. One
    ``reduceat`` over interleaved (start, end) indices, ranges taken in start order so the
    reduction's work is about len(x) plus the ranges' lengths."""
    out = np.full(len(s), empty, dtype)
    n = len(x)
    if n == 0:
        return out
    last = e >= n  # reduceat needs indices < n: the last element is folded in separately
    e_in = np.minimum(e, n - 1)
    body = np.flatnonzero(e_in > s)
    if len(body):
        order = body[np.argsort(s[body], kind="stable")]
        idx = np.empty(2 * len(order), np.int64)
        idx[0::2] = s[order]
        idx[1::2] = e_in[order]
        out[order] = ufunc.reduceat(x, idx, dtype=dtype)[0::2]
    tail = np.flatnonzero(last & (e > s))
    if len(tail):
        out[tail] = ufunc(out[tail], x[n - 1])
    return out


def range_sum(x: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    return _reduce_ranges(np.add, x, s, e, 0.0)


def range_max(x: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Maximum ignoring NaN; NaN for an empty or all-NaN range."""
    return _reduce_ranges(np.fmax, x, s, e, np.nan)


def range_count(flags: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Number of True in flags[s:e] (exact: integer sums)."""
    s = np.clip(s, 0, len(flags))
    e = np.clip(e, s, len(flags))
    return _reduce_ranges(np.add, flags, s, e, 0, np.int64)


def next_minus(x: np.ndarray) -> np.ndarray:
    """x[i + 1] − x[i], NaN for the last row (session ends are never used as a segment)."""
    out = np.empty(len(x))
    if len(x):
        np.subtract(x[1:], x[:-1], out=out[:-1])
        out[-1] = np.nan
    return out


def clip0(x: np.ndarray) -> np.ndarray:
    """``clip(lower_bound=0)`` keeping NaN (missing stays missing)."""
    return np.where(x < 0, 0.0, x)


def pause_flags(dt: np.ndarray, paused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A segment is in a pause when the timer (mostly) stood still: ``paused > dt / 2`` with
    ``dt > 0``; Kleene logic as in Polars, so a missing timer makes the flag null (neither
    True nor False) when ``dt > 0``. Returns (is_true, is_false)."""
    moving_time = dt > 0
    is_true = (paused > 0.5 * dt) & moving_time
    is_false = ~is_true & ~(np.isnan(paused) & moving_time)
    return is_true, is_false


class Columns:
    """A collected frame's Float64 columns, seen as numpy without holding copies: a column is
    converted (a copy when the frame is in several chunks) once for all its lookups
    (:meth:`lookup`) and once for its own reductions, and dropped after each."""

    def __init__(self, frame: pl.DataFrame, names):
        self.frame = frame
        self.n = frame.height
        self.nulls = {c: frame[c].null_count() for c in names}

    def array(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy()

    def valid(self, name: str) -> np.ndarray | None:
        """Where the column is not null; None when it never is."""
        return self.frame[name].is_not_null().to_numpy() if self.nulls[name] else None

    def lookup(self, requests) -> dict:
        """Values at many row sets: ``requests`` are (key, column, rows, ok); returns
        {key: column[rows] where ok, else NaN}. Each column is converted once."""
        by_column: dict[str, list] = {}
        for key, name, index, ok in requests:
            by_column.setdefault(name, []).append((key, index, ok))
        out = {}
        for name, wanted in by_column.items():
            if self.n == 0 or self.nulls[name] == self.n:
                out |= {key: np.full(len(index), np.nan) for key, index, _ in wanted}
                continue
            values = self.array(name)
            out |= {key: gather(values, index, ok) for key, index, ok in wanted}
            del values
        return out
