"""Regenerate the bundled demo landing folder from the shared test corpus (dev-time only).

    python -m pipelines.sample_data.make_sample_data ../shared/data

Sources and licenses are listed in NOTICE. The activityDetails body is built from a real
FIT run (records → samples, lap start times → laps), as Garmin would deliver it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from pipelines.fit.decode import decode_fit
from pipelines.garmin.from_fit import activity_details_item
from pipelines.garmin.generate import DAY_S, daily, sleep, stress_details

HERE = Path(__file__).parent / "landing"

PUSH_COPIES = {
    "connectstats_backfill-activities.json": "2019-05-07/activities-backfill.json",
    "openwearables_push_activities.json": "2025-11-20/activities.json",
    "synthetic_push_activityDetails_cycling_power.json": "2026-01-01/activityDetails-ride.json",
    "synthetic_push_epochs_update_1_partial.json": "2026-01-02/epochs-1.json",
    "synthetic_push_epochs_update_2_complete.json": "2026-01-02/epochs-2.json",
    "synthetic_push_skinTemp.json": "2026-01-02/skinTemp.json",
}
FIT_COPIES = {
    "track_cs_834323.fit": "demo-runner/2019-track-intervals.fit",
    "running-with-developer-data.fit": "demo-runner/structured-run.fit",
    "sample-activity.fit": "demo-rider/edge500-ride.fit",
}


RUNNER_PLAN = """\
plan: track-block
sport: running
sessions:
  - date: 2018-06-14
    name: 6 x 1 km, 1 min jog
    intervals:
      - {kind: warmup}
      - repeat: 6
        intervals:
          - {kind: work, distance: 1km, pace: "4:20-4:50/km"}
          - {kind: recovery, duration: 60s}
      - {kind: cooldown}
  - date: 2020-05-01
    name: 4 x 2:30 on the track
    intervals:
      - {kind: warmup, duration: 6min}
      - repeat: 3
        intervals:
          - {kind: work, duration: "2:30", pace: "3:50-4:05/km"}
          - {kind: recovery, duration: 2min}
      - {kind: work, duration: "2:30", pace: "3:50-4:05/km"}
      - {kind: cooldown, duration: 6min}
  - date: 2020-05-03
    name: recovery run (not done)
    intervals:
      - {kind: work, duration: 40min, hr: 130-145}
"""

LONG_RUN = {
    "workoutId": 555,
    "workoutName": "10 km steady",
    "sport": "RUNNING",
    "segments": [
        {
            "segmentOrder": 1,
            "sport": "RUNNING",
            "steps": [
                {
                    "type": "WorkoutStep",
                    "stepOrder": 1,
                    "intensity": "WARMUP",
                    "durationType": "DISTANCE",
                    "durationValue": 1609,
                    "durationValueType": "METER",
                    "targetType": "OPEN",
                },
                {
                    "type": "WorkoutStep",
                    "stepOrder": 2,
                    "intensity": "ACTIVE",
                    "durationType": "DISTANCE",
                    "durationValue": 8000,
                    "durationValueType": "METER",
                    "targetType": "PACE",
                    "targetValueLow": 3.03,
                    "targetValueHigh": 3.45,
                },
                {
                    "type": "WorkoutStep",
                    "stepOrder": 3,
                    "intensity": "COOLDOWN",
                    "durationType": "OPEN",
                    "targetType": "OPEN",
                },
            ],
        }
    ],
}


def main(shared_data: Path) -> None:
    shutil.rmtree(HERE, ignore_errors=True)
    push = HERE / "garmin" / "push"
    for source, target in PUSH_COPIES.items():
        (push / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shared_data / "garmin" / source, push / target)
    for source, target in FIT_COPIES.items():
        (HERE / "fit" / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shared_data / "fit" / source, HERE / "fit" / target)

    run = decode_fit((shared_data / "fit" / "activity_1378220136.fit").read_bytes())
    item = activity_details_item(run, user_id="demo-api-athlete", activity_id=1378220136)
    body = {"activityDetails": [item]}
    target = push / "2016-09-25" / "activityDetails-run.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(body, separators=(",", ":")))
    # Generated wellness days for the API athlete (values made up, shapes as Garmin's).
    rng = np.random.default_rng(2026)
    user = "demo-api-athlete"
    for day in range(3):
        start = 1_767_222_000 + day * DAY_S  # 2026-01-01T00:00 at UTC+1
        folder = push / f"2026-01-{day + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        bodies = {
            "dailies": {"dailies": [daily(user, start, rng)]},
            "sleeps": {"sleeps": [sleep(user, start - 2 * 3600, rng)]},
            "stressDetails": {"stressDetails": [stress_details(user, start, rng)]},
        }
        for name, body in bodies.items():
            (folder / f"{name}.json").write_text(json.dumps(body, separators=(",", ":")))
    # Plans: one a coach wrote by hand, one as Garmin Training API workout + schedule.
    plans = HERE / "plans"
    (plans / "demo-runner").mkdir(parents=True, exist_ok=True)
    (plans / "demo-runner" / "track-block.yaml").write_text(RUNNER_PLAN)
    (plans / "demo-api-athlete" / "workouts").mkdir(parents=True, exist_ok=True)
    (plans / "demo-api-athlete" / "schedules").mkdir(parents=True, exist_ok=True)
    workout = json.loads(
        (shared_data / "garmin" / "synthetic_training_workout_v2_run_intervals.json").read_text()
    )
    workout["workoutId"] = 123456789
    (plans / "demo-api-athlete" / "workouts" / "6x800.json").write_text(json.dumps(workout))
    (plans / "demo-api-athlete" / "workouts" / "long-run.json").write_text(json.dumps(LONG_RUN))
    (plans / "demo-api-athlete" / "schedules" / "2016-09.json").write_text(
        json.dumps(
            [
                {"workoutId": 555, "date": "2016-09-25"},
                {"workoutId": 123456789, "date": "2016-09-27"},
            ]
        )
    )
    # One broken delivery, to show quarantine at work.
    (push / "2026-01-03").mkdir(parents=True, exist_ok=True)
    (push / "2026-01-03" / "truncated-delivery.json").write_text('{"dailies": [{"userId": "x"')


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
