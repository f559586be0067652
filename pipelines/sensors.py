"""File-arrival sensor on landing/: one run per batch of new or changed files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg

from pipelines.jobs import wearhouse_job
from pipelines.lake.ledger import landing_files
from pipelines.resources import WearhouseLake


def landing_fingerprint(landing: Path) -> tuple[str, int]:
    """A digest of (path, size, mtime) of every landing file, and how many there are."""
    digest = hashlib.sha256()
    files = landing_files(landing)
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(landing)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest(), len(files)


@dg.sensor(
    job=wearhouse_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests a run when files land (cursor: fingerprint of the landing listing).",
)
def landing_sensor(context: dg.SensorEvaluationContext, lake: WearhouseLake) -> dg.SensorResult:
    fingerprint, count = landing_fingerprint(lake.landing_path)
    if count == 0:
        return dg.SensorResult(skip_reason="landing is empty")
    previous = json.loads(context.cursor) if context.cursor else {}
    if previous.get("fingerprint") == fingerprint:
        return dg.SensorResult(skip_reason=f"no new files in landing ({count} known)")
    cursor = json.dumps({"fingerprint": fingerprint, "files": count})
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=fingerprint, tags={"wearhouse/landing_files": str(count)})
        ],
        cursor=cursor,
    )
