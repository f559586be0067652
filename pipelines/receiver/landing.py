"""The receiver's durable writer: a body is whole on disk, under its final name, before the 200.

Each body is written to a hidden temp file in its final folder (``.<32 hex>.tmp``: the ledger
and the landing sensor ignore dot-names and ``.tmp``, and the lake's leftover sweep knows the
pattern), flushed with fdatasync, renamed into place (atomic: a reader sees the whole file or
none) and the folder fsynced so the new name survives a power cut. A folder created on the
way is fsynced into its parent too. Any failure removes the temp file: nothing half-written
ever carries a final name.

Blocking calls only: the app runs them in a thread pool.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

KINDS = ("push", "ping")
_TEMP = re.compile(r"^\.[0-9a-f]{32}\.tmp$")
LOCK_NAME = ".receiver.lock"


def kind_root(landing: Path, kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown delivery kind {kind!r}")
    return landing / "garmin" / kind


def landed_name(received: datetime, file_id: str) -> str:
    """``<received UTC, compact>-<random id>.json``: sorts by arrival, never from request data."""
    return f"{received:%Y%m%dT%H%M%S}{received.microsecond:06d}Z-{file_id}.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_datasync = getattr(os, "fdatasync", os.fsync)


@dataclass
class PendingBody:
    """A body being written: its temp file, where it goes, how much is in it. Its methods
    take a lock: an abort (a cancelled request) waits for a write under way in a thread
    instead of closing the descriptor beneath it."""

    fd: int
    temp: Path
    final: Path
    size: int = 0
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def write(self, chunks: Sequence[bytes]) -> None:
        with self._lock:
            self._check_open()
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    written = os.write(self.fd, view)
                    view = view[written:]
                    self.size += written

    def commit(self) -> Path:
        """Flush, close, rename into place, fsync the folder. On failure the temp is gone."""
        with self._lock:
            self._check_open()
            try:
                _datasync(self.fd)
                self._close()
                os.rename(self.temp, self.final)
            except BaseException:
                self._discard()
                raise
        # Should this fail, the caller answers 5xx for a whole file that may stay: Garmin
        # redelivers, and the ledger takes the same bytes under two names as one input.
        _fsync_dir(self.final.parent)
        return self.final

    def abort(self) -> None:
        with self._lock:
            self._discard()

    def _discard(self) -> None:
        self._close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("the body was already committed or aborted")

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


class LandingWriter:
    """Writes bodies under ``landing/garmin/{push,ping}/<UTC date>/``."""

    def __init__(self, landing: Path) -> None:
        self.landing = Path(landing)
        self._durable: set[Path] = set()  # folders known to exist with a durable entry
        self._lock = threading.Lock()

    def prepare(self) -> None:
        for kind in KINDS:
            self._ensure_dir(kind_root(self.landing, kind))

    def begin(self, kind: str, received: datetime, file_id: str) -> PendingBody:
        """A new temp file in the body's final folder."""
        folder = kind_root(self.landing, kind) / f"{received:%Y-%m-%d}"
        final = folder / landed_name(received, file_id)
        temp = folder / f".{file_id}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self._ensure_dir(folder)
        try:
            fd = os.open(temp, flags, 0o666)
        except FileNotFoundError:
            # The folder was removed behind our back (an erasure, an operator): make it again.
            with self._lock:
                self._durable.discard(folder)
            self._ensure_dir(folder)
            fd = os.open(temp, flags, 0o666)
        return PendingBody(fd, temp, final)

    def store(self, kind: str, received: datetime, file_id: str, chunks: Sequence[bytes]) -> Path:
        """A whole body in one call (the common case: it arrived in one piece)."""
        pending = self.begin(kind, received, file_id)
        try:
            pending.write(chunks)
        except BaseException:
            pending.abort()
            raise
        return pending.commit()

    def _ensure_dir(self, folder: Path) -> None:
        if folder in self._durable:
            return
        with self._lock:
            missing = []
            probe = folder
            while not probe.is_dir():
                missing.append(probe)
                probe = probe.parent
            for path in reversed(missing):
                with contextlib.suppress(FileExistsError):
                    path.mkdir()
                _fsync_dir(path.parent)
            self._durable.add(folder)


def temp_leftovers(landing: Path) -> Iterator[Path]:
    """The receiver's temp files under landing/garmin/{push,ping} (links not followed)."""
    for kind in KINDS:
        root = kind_root(landing, kind)
        for folder, _dirs, files in os.walk(root, followlinks=False):
            for name in files:
                if _TEMP.match(name):
                    yield Path(folder) / name


def remove_leftovers(landing: Path, min_age_s: float = 0.0) -> list[Path]:
    """Remove temp files a killed receiver left (at least ``min_age_s`` old)."""
    cutoff = time.time() - min_age_s
    removed = []
    for path in temp_leftovers(landing):
        with contextlib.suppress(FileNotFoundError):
            if path.lstat().st_mtime <= cutoff:
                path.unlink()
                removed.append(path)
    return removed


def hold_shared_lock(landing: Path) -> int:
    """A shared hold on the receivers' lock (a descriptor: close it to let go), so that no
    receiver starting meanwhile takes this process's temp files for a dead one's."""
    lock_path = landing / "garmin" / LOCK_NAME
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def receiver_lock(landing: Path, busy_min_age_s: float) -> Iterator[list[Path]]:
    """Held for a receiver's lifetime (shared: several may serve one landing). The first to
    start cleans every temp file a killed receiver left; when another receiver is running,
    only temp files older than ``busy_min_age_s`` (no live request can own them) are removed.
    Yields what was removed."""
    lock_path = landing / "garmin" / LOCK_NAME
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        if alone:
            removed = remove_leftovers(landing)
        else:
            fcntl.flock(fd, fcntl.LOCK_SH)
            removed = remove_leftovers(landing, busy_min_age_s)
        fcntl.flock(fd, fcntl.LOCK_SH)  # converts the exclusive lock; a no-op otherwise
        yield removed
    finally:
        os.close(fd)
