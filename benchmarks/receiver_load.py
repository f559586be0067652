"""Load and fault test of `wearhouse serve` on loopback.

What it measures
----------------
The real ``wearhouse serve`` runs in a child process (its own session, a fresh home under
/tmp). Eight concurrent clients, each on its own keep-alive connection, post to
``/garmin/push/dailies`` as fast as they get answers:

* ``small``: 2 KB bodies (``--small-kb``) for ``--seconds``;
* ``large``: 5 MB bodies (``--large-mb``) for ``--seconds``;
* ``floor`` (the baseline): no HTTP, no server; the receiver's own writer called from 8
  threads in this process with 2 KB bodies: the rate the disk and the kernel allow for
  one fsynced file per body, which no server on this machine can beat.

Every body is distinct (a counter inside it), so its sha256 identifies it. Reported:
requests/s, MB/s, p50/p99/max latency (send of the first byte to the last byte of the answer).

The clients are plain asyncio HTTP/1.1 (``--client raw``, the default) or ``httpx.AsyncClient``
(``--client httpx``): the clients share the machine's cores with the server, and httpx spends
several times the CPU per request of the raw client, which then caps what is measured.

``fault``: the same load, with 2 of the 8 clients posting 5 MB bodies so that writes are under
way; after ``--fault-after`` seconds the server's whole process group gets SIGKILL, then the
server is started again. Checked: every body answered 200 is on disk under
``landing/garmin/push/`` whole (sha256 of a landed file = sha256 of a sent body); no landed
file is torn (each is the sha256 of some sent body); no temp file is left after the restart
(how many the kill left is reported, the restart removes them); the restarted server answers.

How to run (from the repository root)::

    .venv/bin/python -m benchmarks.receiver_load [--seconds 10] [--client raw|httpx]
        [--phases small,large,fault] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "receiver_load.json"
MB = 2**20
PATH = "/garmin/push/dailies"


# -- bodies ---------------------------------------------------------------------------------


class Bodies:
    """Distinct JSON object bodies of one size: a counter, padded."""

    def __init__(self, size: int, tag: str) -> None:
        self.size = size
        self.tag = tag
        self.count = 0
        self._pad = b"x" * size

    def next(self) -> bytes:
        self.count += 1
        head = b'{"dailies": [{"summaryId": "%s-%d", "pad": "' % (self.tag.encode(), self.count)
        tail = b'"}]}'
        return head + self._pad[: max(0, self.size - len(head) - len(tail))] + tail


# -- clients --------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    answered: dict[str, int] = field(default_factory=dict)  # sha256 → size, answered 200
    sent: set[str] = field(default_factory=set)  # sha256 of every body sent
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    bytes_ok: int = 0


async def _raw_client(port: int, bodies: Bodies, stop_at: float, tally: Tally) -> None:
    reader = writer = None
    try:
        while time.perf_counter() < stop_at:
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    tally.errors += 1
                    await asyncio.sleep(0.05)  # the server is gone (fault phase)
                    continue
            body = bodies.next()
            digest = hashlib.sha256(body).hexdigest()
            tally.sent.add(digest)
            head = (
                f"POST {PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            try:
                writer.write(head + body if len(body) < 65536 else head)
                if len(body) >= 65536:
                    writer.write(body)
                await writer.drain()
                status_line = await reader.readline()
                length, close = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "connection" and "close" in value.lower():
                        close = True
                await reader.readexactly(length)
                status = int(status_line.split()[1])
            except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
                tally.errors += 1
                writer.close()
                reader = writer = None
                await asyncio.sleep(0.05)  # the server is gone (fault phase): retry later
                continue
            tally.latencies.append(time.perf_counter() - started)
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if status == 200:
                tally.answered[digest] = len(body)
                tally.bytes_ok += len(body)
            if close:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def _httpx_client(port: int, bodies: Bodies, stop_at: float, tally: Tally) -> None:
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
        while time.perf_counter() < stop_at:
            body = bodies.next()
            digest = hashlib.sha256(body).hexdigest()
            tally.sent.add(digest)
            started = time.perf_counter()
            try:
                response = await client.post(
                    PATH, content=body, headers={"content-type": "application/json"}
                )
            except httpx.TransportError:
                tally.errors += 1
                await asyncio.sleep(0.05)
                continue
            tally.latencies.append(time.perf_counter() - started)
            tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                tally.answered[digest] = len(body)
                tally.bytes_ok += len(body)


async def _load(port: int, client: str, sizes: list[int], seconds: float, tally: Tally) -> float:
    worker = _raw_client if client == "raw" else _httpx_client
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(
        *(worker(port, Bodies(size, f"c{i}"), stop_at, tally) for i, size in enumerate(sizes))
    )
    return time.perf_counter() - started


def summarize(name: str, tally: Tally, wall: float, body_bytes: int) -> dict:
    lat = sorted(tally.latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    ok = tally.statuses.get(200, 0)
    return {
        "phase": name,
        "body_bytes": body_bytes,
        "requests_ok": ok,
        "other_statuses": {str(k): v for k, v in tally.statuses.items() if k != 200},
        "errors": tally.errors,
        "seconds": round(wall, 2),
        "req_per_s": round(ok / wall, 1),
        "mb_per_s": round(tally.bytes_ok / MB / wall, 1),
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(lat[-1] * 1000, 2) if lat else None,
    }


# -- the server -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Path, port: int, log_path: Path, workers: int = 1) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "wearhouse"), "serve", "--home", str(home)]
    command += ["--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEARHOUSE_")}
    env["WEARHOUSE_RECEIVER_WORKERS"] = str(workers)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=log, env=env, cwd=ROOT, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}: see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the server did not come up within 60 s")


def stop_server(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    # The server runs in its own session: signal its whole process group.
    with_group = sig == signal.SIGKILL
    try:
        if with_group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def landed(landing: Path) -> tuple[dict[str, str], list[Path]]:
    """sha256 → file of every landed push body, and the temp files present."""
    files, temps = {}, []
    for path in (landing / "garmin" / "push").rglob("*"):
        if not path.is_file():
            continue
        if path.name.startswith(".") or path.name.endswith(".tmp"):
            temps.append(path)
        else:
            files[hashlib.sha256(path.read_bytes()).hexdigest()] = str(path)
    return files, temps


# -- phases ---------------------------------------------------------------------------------


def phase_load(home: Path, port: int, args, name: str, size: int) -> dict:
    tally = Tally()
    wall = asyncio.run(_load(port, args.client, [size] * args.clients, args.seconds, tally))
    result = summarize(name, tally, wall, size)
    files, temps = landed(home / "landing")
    result["all_answered_on_disk"] = all(d in files for d in tally.answered)
    result["temp_files"] = len(temps)
    return result


def phase_floor(home: Path, args) -> dict:
    """The durable write alone (no HTTP): the receiver's writer from ``--clients`` threads,
    2 KB bodies, for ``--seconds``: the ceiling the disk and the kernel set."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    from pipelines.receiver.landing import LandingWriter

    writer = LandingWriter(home / "floor")
    writer.prepare()
    size = int(args.small_kb * 1024)
    tally = Tally()
    stop_at = time.perf_counter() + args.seconds

    def loop(i: int) -> None:
        bodies = Bodies(size, f"f{i}")
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.store("push", datetime.now(UTC), uuid.uuid4().hex, [bodies.next()])
            tally.latencies.append(time.perf_counter() - started)
            tally.statuses[200] = tally.statuses.get(200, 0) + 1
            tally.bytes_ok += size

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(loop, range(args.clients)))
    result = summarize("floor", tally, time.perf_counter() - started, size)
    shutil.rmtree(home / "floor", ignore_errors=True)
    return result


def phase_fault(home: Path, port: int, args, log_path: Path) -> dict:
    landing = home / "landing"
    shutil.rmtree(landing / "garmin" / "push", ignore_errors=True)
    process = start_server(home, port, log_path, args.workers)
    sizes = [int(args.large_mb * MB)] * 2 + [int(args.small_kb * 1024)] * (args.clients - 2)
    tally = Tally()

    async def load_and_kill() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        killed = loop.run_in_executor(None, _kill_later, process, args.fault_after)
        wall = await _load(port, args.client, sizes, args.fault_after + 2.0, tally)
        return wall, await killed

    wall, killed_at = asyncio.run(load_and_kill())
    _, temps_after_kill = landed(landing)
    answered_before_kill = len(tally.answered)
    process = start_server(home, port, log_path, args.workers)
    restarted_ok = httpx.post(f"http://127.0.0.1:{port}{PATH}", content=b"{}").status_code == 200
    stop_server(process)
    files, temps = landed(landing)
    missing = [d for d in tally.answered if d not in files]
    unknown = [d for d in files if d not in tally.sent and d != hashlib.sha256(b"{}").hexdigest()]
    return {
        "phase": "fault",
        "killed_after_s": round(killed_at, 2),
        "load_seconds": round(wall, 2),
        "answered_200": answered_before_kill,
        "answered_200_on_disk_whole": answered_before_kill - len(missing),
        "lost": len(missing),
        "landed_files": len(files) - 1,  # minus the probe after the restart
        "landed_not_answered": len(files) - 1 - (answered_before_kill - len(missing)),
        "torn_or_unknown_files": len(unknown),
        "temp_files_after_kill": len(temps_after_kill),
        "temp_files_after_restart": len(temps),
        "restarted_and_answered": restarted_ok,
        "client_errors_after_kill": tally.errors,
    }


def _kill_later(process: subprocess.Popen, after: float) -> float:
    started = time.perf_counter()
    time.sleep(after)
    stop_server(process, signal.SIGKILL)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per load phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--small-kb", type=float, default=2.0)
    parser.add_argument("--large-mb", type=float, default=5.0)
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--workers", type=int, default=1, help="WEARHOUSE_RECEIVER_WORKERS")
    parser.add_argument("--phases", default="small,large,floor,fault")
    parser.add_argument("--fault-after", type=float, default=3.0, help="seconds of load")
    parser.add_argument("--keep", action="store_true", help="keep the home under /tmp")
    args = parser.parse_args(argv)
    phases = args.phases.split(",")

    home = Path(tempfile.mkdtemp(prefix="wearhouse-receiver-"))
    log_path = home / "serve.log"
    port = _free_port()
    results = []
    try:
        if {"small", "large"} & set(phases):
            process = start_server(home, port, log_path, args.workers)
            try:
                if "small" in phases:
                    results.append(phase_load(home, port, args, "small", int(args.small_kb * 1024)))
                if "large" in phases:
                    results.append(phase_load(home, port, args, "large", int(args.large_mb * MB)))
            finally:
                stop_server(process)
        if "floor" in phases:
            results.append(phase_floor(home, args))
        if "fault" in phases:
            results.append(phase_fault(home, port, args, log_path))
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"home kept at {home}")

    print(
        f"clients: {args.clients} x {args.client}, {args.seconds:g} s per load phase, "
        f"{args.workers} server process(es)"
    )
    print(
        f"{'phase':<7} {'body':>9} {'ok':>7} {'req/s':>8} {'MB/s':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7}  other"
    )
    for r in results:
        if r["phase"] == "fault":
            continue
        print(
            f"{r['phase']:<7} {r['body_bytes']:>9,} {r['requests_ok']:>7,} {r['req_per_s']:>8,} "
            f"{r['mb_per_s']:>7} {r['p50_ms']:>7} {r['p99_ms']:>7} {r['max_ms']:>7}  "
            + (
                "(the writer alone, no HTTP)"
                if r["phase"] == "floor"
                else f"statuses={r['other_statuses']} errors={r['errors']} "
                f"on_disk={r['all_answered_on_disk']} temps={r['temp_files']}"
            )
        )
    for r in results:
        if r["phase"] == "fault":
            print("fault: " + ", ".join(f"{k}={v}" for k, v in r.items() if k != "phase"))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    fault = next((r for r in results if r["phase"] == "fault"), None)
    if fault and (
        fault["lost"]
        or fault["torn_or_unknown_files"]
        or fault["temp_files_after_restart"]
        or not fault["restarted_and_answered"]
    ):
        print("FAULT CHECK FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
