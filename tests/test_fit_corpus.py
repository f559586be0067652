"""Expected outcome for every file of the shared FIT corpus (when ../shared is present).

integrity: ok | crc_mismatch | truncated | corrupt_header | corrupt_data |
decoded_with_warnings (recovered: every message that decoded is kept) | unusable (quarantined).
Counts are sessions, laps and records decoded; they equal the corpus MANIFEST.tsv counts (made by
an independent pass) for all 48 files, damaged ones included.
"""

from pathlib import Path

import pytest

from pipelines.fit.decode import FitUnusable, decode_fit

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "fit"

EXPECTED = [
    ("0134902991.fit", "ok", 1, 1, 739),
    ("18857497810_ACTIVITY.fit", "ok", 1, 11, 3535),
    ("2013-02-06-12-11-14.fit", "ok", 1, 5, 590),
    ("2015-10-13-08-43-15.fit", "ok", 1, 1, 221),
    ("20170518-191602-1740899583.fit", "ok", 1, 8, 1641),
    ("2019-02-17-062644-ELEMNT-297E-195-0.fit", "ok", 1, 1, 13471),
    ("6471559601_ACTIVITY.fit", "ok", 3, 3, 60),
    ("Edge810-Vector-2013-08-16-15-35-10.fit", "ok", 1, 8, 4700),
    ("MonitoringFile.fit", "ok", 0, 0, 0),
    ("WorkoutRepeatSteps.fit", "ok", 0, 0, 0),
    ("activity-activity-filecrc.fit", "crc_mismatch", 2, 2, 28),
    ("activity-filecrc.fit", "crc_mismatch", 1, 1, 14),
    ("activity-large-fenxi2-multisport.fit", "ok", 7, 7, 24239),
    ("activity-settings-corruptheader.fit", "corrupt_header", 1, 1, 14),
    ("activity-settings-nodata.fit", "truncated", 1, 1, 14),
    ("activity-settings.fit", "ok", 1, 1, 14),
    ("activity-unexpected-eof.fit", "truncated", 1, 1, 14),
    ("activity_1378220136.fit", "ok", 1, 7, 614),
    ("activity_234979239.fit", "ok", 1, 6, 763),
    ("activity_424479793.fit", "ok", 1, 15, 32),
    ("activity_multisport.fit", "ok", 2, 7, 78),
    ("activity_poolswim_with_hr.fit", "ok", 1, 38, 3501),
    ("activity_truncated.fit", "ok", 0, 0, 14),
    ("antfs-dump.63.fit", "ok", 1, 1, 686),
    ("chained_Activity_activity_poolswim.fit", "ok", 2, 10, 3625),
    ("compressed-speed-distance.fit", "ok", 1, 11, 755),
    ("coros-pace-2-cycling-misaligned-fields.fit", "decoded_with_warnings", 1, 4, 11272),
    ("developer-types-sample.fit", "ok", 1, 1, 3424),
    ("elemnt-bolt-no-application-id-inside-developer-data-id.fit", "ok", 1, 1, 132),
    ("event_timestamp.fit", "ok", 1, 99, 4376),
    ("failed.fit", "ok", 1, 0, 779),
    ("garmin-edge-500-activity.fit", "ok", 1, 9, 10686),
    ("garmin-fr935-cr.fit", "ok", 1, 89, 7515),
    ("hrv-activity.fit", "ok", 1, 15, 1072),
    ("mornindew-broken.fit", "ok", 1, 11, 6874),
    ("nick.fit", "truncated", 0, 1, 14391),
    ("null_compressed_speed_dist.fit", "ok", 1, 1, 1808),
    ("raw_run.fit", "crc_mismatch", 1, 1, 303),
    ("running-with-developer-data.fit", "ok", 1, 14, 1681),
    ("sample-activity.fit", "ok", 1, 4, 3098),
    ("sample_mulitple_header.fit", "ok", 5, 5, 1773),
    ("strava-android-app-201.10-b1218918.fit", "corrupt_data", 1, 1, 473),
    ("track_cs_1451.fit", "ok", 5, 18, 3942),
    ("track_cs_834323.fit", "ok", 1, 9, 1692),
    ("triathlon_summary_first.fit", "ok", 5, 11, 4043),
    ("triathlon_summary_last.fit", "ok", 5, 11, 4043),
    ("unterminated-strings.fit", "ok", 1, 1, 33),
    ("valid_only_contain_fileid.fit", "ok", 0, 0, 1),
]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared FIT corpus is not beside the repo")
@pytest.mark.parametrize(("name", "integrity", "sessions", "laps", "records"), EXPECTED)
def test_every_shared_fit_file(name, integrity, sessions, laps, records):
    raw = (CORPUS / name).read_bytes()
    if integrity == "unusable":
        with pytest.raises(FitUnusable):
            decode_fit(raw)
        return
    decoded = decode_fit(raw)
    assert decoded.integrity == integrity
    assert (decoded.sessions.height, decoded.laps.height, decoded.records.height) == (
        sessions,
        laps,
        records,
    )


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared FIT corpus is not beside the repo")
def test_table_covers_the_whole_corpus():
    assert sorted(p.name for p in CORPUS.glob("*.fit")) == sorted(e[0] for e in EXPECTED)
