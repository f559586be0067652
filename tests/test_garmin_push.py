import json

import polars as pl
import pytest

from pipelines.garmin.push import PayloadError, parse_push

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z: instants must be plausible (1989 … 2100)


def body(**summaries) -> bytes:
    return json.dumps(summaries).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty body"),
        (b'{"activities": [', "malformed JSON"),
        (b"[1, 2]", "expected an object keyed by summary type"),
        (b'{"summaryId": "x"}', "not a push envelope"),
        (b"{}", "empty envelope"),
        (b"\xff\xfe{", "not UTF-8"),
    ],
)
def test_unusable_bodies_say_why(raw, reason):
    with pytest.raises(PayloadError, match=reason):
        parse_push(raw)


def test_activities_typed_with_units_local_time_and_raw_json(fixtures):
    parsed = parse_push((fixtures / "garmin" / "openwearables_push_activities.json").read_bytes())
    row = parsed.tables()["garmin_activities"].row(0, named=True)
    assert row["user_id"] == "garmin_user_123"
    assert row["activity_id"] == 21047282990
    assert row["duration_s"] == 3600
    assert row["utc_offset_s"] == 3600
    assert row["start_time_utc"].timestamp() == 1763597760
    # local wall time = UTC + offset, kept naive because it is not UTC
    assert row["start_time_local"].tzinfo is None
    assert (row["start_time_local"] - row["start_time_utc"].replace(tzinfo=None)).seconds == 3600
    assert json.loads(row["raw_json"])["activityName"] == "Morning Run"


def test_offset_spellings_are_normalized():
    for key in ("startTimeOffsetInSeconds", "offsetInSeconds", "offsetStartTimeInSeconds"):
        parsed = parse_push(
            body(
                moveIQActivities=[
                    {"userId": "u", "summaryId": "s", "startTimeInSeconds": T0, key: -7200}
                ]
            )
        )
        assert parsed.tables()["garmin_move_iq"]["utc_offset_s"].to_list() == [-7200]


def test_bad_item_is_refused_and_good_items_land():
    parsed = parse_push(
        body(
            activities=[
                {
                    "userId": "u1",
                    "summaryId": "1",
                    "activityId": 1,
                    "startTimeInSeconds": T0,
                    "durationInSeconds": 60,
                },
                {"userId": "u2", "summaryId": "2", "durationInSeconds": "sixty"},
                "not an object",
                {"summaryId": "3"},
            ]
        )
    )
    assert parsed.tables()["garmin_activities"]["user_id"].to_list() == ["u1"]
    reasons = dict(parsed.refusals)
    assert "durationInSeconds" in reasons[1] and "sixty" in reasons[1]
    assert "expected an object" in reasons[2]
    assert "missing userId" in reasons[3]


def test_activity_details_split_into_samples_and_laps(fixtures):
    raw = (fixtures / "garmin" / "synthetic_push_activityDetails_cycling_power.json").read_bytes()
    tables = parse_push(raw).tables()
    samples, laps = tables["garmin_activity_samples"], tables["garmin_activity_laps"]
    assert samples.height == 6 and laps.height == 2
    assert samples["power_w"].null_count() == 0
    assert samples["air_temperature_c"].to_list()[0] == 6.0  # from Garmin's "Celcius"
    assert samples["time_utc"].dtype == pl.Datetime("us", "UTC")
    assert laps["lap_index"].to_list() == [0, 1]
    assert tables["garmin_activity_details"]["n_samples"].to_list() == [6]


def test_unknown_sample_fields_are_kept_as_json():
    item = {
        "userId": "u",
        "summaryId": "9-detail",
        "activityId": 9,
        "summary": {"startTimeInSeconds": T0},
        "samples": [{"startTimeInSeconds": T0, "newSensorValue": 3}, {"startTimeInSeconds": T0}],
        "laps": [],
    }
    samples = parse_push(body(activityDetails=[item])).tables()["garmin_activity_samples"]
    assert json.loads(samples["extra_json"][0]) == {"newSensorValue": 3}


def test_sample_with_string_number_refuses_that_item_only():
    good = {
        "userId": "u",
        "summaryId": "1-detail",
        "activityId": 1,
        "summary": {},
        "samples": [{"startTimeInSeconds": T0, "heartRate": 100}],
        "laps": [],
    }
    bad = {
        **good,
        "summaryId": "2-detail",
        "activityId": 2,
        "samples": [{"startTimeInSeconds": T0, "heartRate": "high"}],
    }
    parsed = parse_push(body(activityDetails=[good, bad]))
    assert parsed.tables()["garmin_activity_details"]["activity_id"].to_list() == [1]
    assert parsed.refusals and parsed.refusals[0][0] == 1


def test_unknown_summary_type_is_kept_and_reported():
    parsed = parse_push(body(brandNewThing=[{"userId": "u", "summaryId": "n1", "x": 1}]))
    other = parsed.tables()["garmin_other_summaries"]
    assert other["summary_type"].to_list() == ["brandNewThing"]
    assert json.loads(other["raw_json"][0])["x"] == 1
    assert parsed.unknown_types == {"brandNewThing"}


@pytest.mark.parametrize(
    ("name", "table", "rows"),
    [
        ("openwearables_push_deregistrations.json", "garmin_deregistrations", 1),
        ("openwearables_push_hrv.json", "garmin_hrv", 1),
        ("openwearables_push_userPermissionsChange.json", "garmin_permission_changes", 1),
        ("synthetic_push_epochs_update_1_partial.json", "garmin_epochs", 1),
        ("synthetic_push_skinTemp.json", "garmin_skin_temp", 1),
        ("synthetic_push_mct.json", "garmin_mct", 1),
        ("synthetic_specshaped_dailies.json", "garmin_dailies", 2),
        ("synthetic_specshaped_sleeps.json", "garmin_sleeps", 2),
        ("synthetic_specshaped_stressDetails.json", "garmin_stress_details", 1),
        ("synthetic_specshaped_bodyComps.json", "garmin_body_comps", 2),
        ("synthetic_specshaped_bloodPressures.json", "garmin_blood_pressures", 1),
        ("synthetic_specshaped_pulseox.json", "garmin_pulse_ox", 1),
        ("synthetic_specshaped_allDayRespiration.json", "garmin_respiration", 1),
        ("synthetic_specshaped_healthSnapshot.json", "garmin_health_snapshots", 1),
        ("synthetic_specshaped_userMetrics.json", "garmin_user_metrics", 1),
        ("synthetic_specshaped_moveIQActivities.json", "garmin_move_iq", 1),
    ],
)
def test_every_summary_type_has_its_bronze_table(fixtures, name, table, rows):
    parsed = parse_push((fixtures / "garmin" / name).read_bytes())
    assert not parsed.refusals and not parsed.unknown_types
    frame = parsed.tables()[table]
    assert frame.height == rows
    assert frame["user_id"].null_count() == 0
    assert all(json.loads(raw) for raw in frame["raw_json"])


def test_time_offset_maps_are_exploded_with_sentinels_as_nulls(fixtures):
    tables = parse_push(
        (fixtures / "garmin" / "synthetic_specshaped_stressDetails.json").read_bytes()
    ).tables()
    series = tables["garmin_timeseries"]
    stress = series.filter(pl.col("series") == "stress_level").sort("offset_s")
    start = tables["garmin_stress_details"]["start_time_utc"][0]
    assert (stress["time_utc"] - start).dt.total_seconds().to_list() == stress["offset_s"].to_list()
    assert set(series["series"]) == {"stress_level", "body_battery"}
    negative = parse_push(
        body(
            stressDetails=[
                {
                    "userId": "u",
                    "summaryId": "s",
                    "startTimeInSeconds": T0,
                    "timeOffsetStressLevelValues": {"0": 30, "180": -1, "360": -2},
                }
            ]
        )
    ).tables()
    assert negative["garmin_timeseries"]["value"].to_list() == [30.0, None, None]


def test_sleep_levels_become_rows(fixtures):
    tables = parse_push(
        (fixtures / "garmin" / "synthetic_specshaped_sleeps.json").read_bytes()
    ).tables()
    levels = tables["garmin_sleep_levels"]
    assert levels.height > 0 and set(levels["level"]) <= {"deep", "light", "rem", "awake"}
    assert (levels["end_time_utc"] >= levels["start_time_utc"]).all()


# --- the fast path (msgspec, undecoded maps) decides and builds exactly as json.loads would ---


def _tables_equal(left: dict[str, pl.DataFrame], right: dict[str, pl.DataFrame]) -> None:
    assert list(left) == list(right)
    for table, frame in left.items():
        other = right[table]
        assert frame.schema == other.schema, table
        as_json = [c for c in frame.columns if c.endswith("_json")]
        assert frame.drop(as_json).equals(other.drop(as_json), null_equal=True), table
        for column in as_json:
            decoded = [None if v is None else json.loads(v) for v in frame[column]]
            assert decoded == [None if v is None else json.loads(v) for v in other[column]]


def _generated_items() -> list[tuple[str, dict]]:
    import numpy as np

    from pipelines.garmin.generate import activity_details, daily, sleep, stress_details

    rng = np.random.default_rng(5)
    start = 1_767_225_600
    return [
        ("dailies", daily("user-1", start, rng)),
        ("stressDetails", stress_details("user-2", start, rng)),
        ("sleeps", sleep("user-3", start, rng)),
        ("activityDetails", activity_details("user-4", 7, start, rng, duration_s=600)),
    ]


@pytest.mark.parametrize("compact", [True, False])
def test_item_by_item_parse_equals_the_whole_body_parse(compact):
    from pipelines.garmin.push import _parse_item_by_item, _parse_whole

    items = _generated_items()
    daily = dict(items[0][1])
    hr = daily["timeOffsetHeartRateSamples"]
    variants = [
        {**daily, "summaryId": "neg", "timeOffsetHeartRateSamples": {"-15": -0, "0": 0, "15": -3}},
        {**daily, "summaryId": "big", "timeOffsetHeartRateSamples": {"0": 123456789012345678}},
        {**daily, "summaryId": "f", "timeOffsetHeartRateSamples": {"0": 1.5, "15": None}},
        {**daily, "summaryId": "z", "timeOffsetHeartRateSamples": {"007": 1, "15": 2}},
        {**daily, "summaryId": "s", "timeOffsetHeartRateSamples": {"0": "60"}},
        {**daily, "summaryId": "k", "timeOffsetHeartRateSamples": {"1e3": 60}},
        {**daily, "summaryId": "e", "timeOffsetHeartRateSamples": {}},
        {**daily, "summaryId": "h", "timeOffsetHeartRateSamples": dict(list(hr.items())[:3])},
        {**daily, "summaryId": "huge", "timeOffsetHeartRateSamples": {"0": 2**70}},
    ]
    run = items[3][1]

    def with_sample(summary_id: str, **change) -> dict:
        samples = [dict(sample) for sample in run["samples"][:4]]
        samples[1].update(change)
        return {**run, "summaryId": summary_id, "samples": samples}

    activities = [
        with_sample("a-null", heartRate=None, powerInWatts=None),
        with_sample("a-mixed", heartRate=120.5, timerDurationInSeconds=-0.0),
        with_sample("a-minus-zero", latitudeInDegree=-0, stepsPerMinute=-0),
        with_sample("a-extra", newSensorValue=3),
        with_sample("a-string", heartRate="high"),
        with_sample("a-bool", heartRate=True),
        with_sample("a-huge", heartRate=2**64),
        with_sample("a-no-start", startTimeInSeconds=None),
        {**run, "summaryId": "a-empty", "samples": []},
        {**run, "summaryId": "a-not-objects", "samples": [1, 2]},
    ]
    body: dict[str, list] = {}
    for summary_type, item in [
        *items,
        *(("dailies", v) for v in variants),
        *(("activityDetails", a) for a in activities),
    ]:
        body.setdefault(summary_type, []).append(item)
    separators = (",", ":") if compact else None
    raw = json.dumps(body, separators=separators).encode()
    fast, whole = _parse_item_by_item(raw, None), _parse_whole(raw, None)
    assert fast.refusals == whole.refusals and fast.item_counts == whole.item_counts
    _tables_equal(fast.tables(), whole.tables())
    refused = {index for index, _ in whole.refusals}
    assert refused == {6, 17, 20, 22}  # offset "1e3"; a string, no start, not objects


def test_int_map_reads_the_integers_the_json_spells():
    from pipelines.garmin.fields import int_map

    accepted = [b'{"0":55,"15":-3,"30":0}', b'{"-5":-0,"86385":190}', b'{"0":123456789012345678}']
    for raw in accepted:
        keys, values = int_map(raw)
        decoded = json.loads(raw)
        assert keys.tolist() == [int(k) for k in decoded]
        assert values.tolist() == list(decoded.values())
    refused = [
        b'{"0": 55}',  # whitespace
        b'{"0":5.5}',
        b'{"0":null}',
        b'{"0":"5"}',
        b'{"007":5}',
        b'{"-":5}',
        b'{"--1":5}',
        b'{"1-2":5}',
        b'{"1:2":5}',
        b'{"1,2":5}',
        b'{"0":1234567890123456789}',  # beyond 18 digits
        b'{"0":[1]}',
        b"{}",
    ]
    assert [int_map(raw) for raw in refused] == [None] * len(refused)


def test_truncated_body_is_refused_whole():
    items = _generated_items()
    raw = json.dumps({"dailies": [items[0][1]]}, separators=(",", ":")).encode()
    with pytest.raises(PayloadError, match="malformed JSON"):
        parse_push(raw[: len(raw) // 2])


def test_integer_beyond_int64_refuses_the_item_not_the_file():
    from pipelines.garmin.push import parse_push

    good = {"userId": "u1", "summaryId": "d1", "startTimeInSeconds": 1_700_000_000, "steps": 10}
    huge = {**good, "summaryId": "d2", "steps": 2**64}
    parsed = parse_push(json.dumps({"dailies": [good, huge]}).encode())
    assert [r["summary_id"] for r in parsed.rows["garmin_dailies"]] == ["d1"]
    ((index, reason),) = parsed.refusals
    assert index == 1 and "steps" in reason and "64-bit" in reason


# --- hostile inputs: every one ends as rows + refusals or a PayloadError (issue 18) ---------


def _daily(**change) -> dict:
    item = {
        "userId": "u",
        "summaryId": "d1",
        "startTimeInSeconds": T0,
        "timeOffsetHeartRateSamples": {"0": 60, "15": 61},
    }
    return {**item, **change}


def _details(samples=None, laps=None, **change) -> dict:
    item = {
        "userId": "u",
        "summaryId": "1-detail",
        "activityId": 1,
        "summary": {"startTimeInSeconds": T0},
        "samples": samples or [{"startTimeInSeconds": T0, "heartRate": 100}],
        "laps": laps or [{"startTimeInSeconds": T0}],
    }
    return {**item, **change}


def _both_paths(raw: bytes):
    """parse_push, and the whole-body parse it falls back on: they must decide alike."""
    from pipelines.garmin.push import _parse_whole

    results = []
    for parse in (parse_push, lambda r: _parse_whole(r, None)):
        try:
            parsed = parse(raw)
        except PayloadError as exc:
            results.append(str(exc))
        else:
            parsed.tables()
            results.append([index for index, _ in parsed.refusals])
    return results


@pytest.mark.parametrize("levels", [3000, 100])
def test_deep_nesting_refuses_the_body(levels):
    deep = b"[" * levels + b"]" * levels
    for raw in (b'{"dailies":[' + deep + b"]}", b'{"dailies":[{"userId":"u","x":' + deep + b"}]}"):
        with pytest.raises(PayloadError, match="nesting deeper than 64"):
            parse_push(raw)
        assert _both_paths(raw) == ["nesting deeper than 64"] * 2


def test_nesting_bound_is_exact_on_both_paths():
    # An item value opens at level 4: 61 more brackets reach level 64, 62 go beyond.
    for levels, ok in ((61, True), (62, False)):
        deep = b"[" * levels + b"]" * levels
        raw = b'{"dailies":[{"userId":"u","x":' + deep + b"}]}"
        expected = [[]] * 2 if ok else ["nesting deeper than 64"] * 2
        assert _both_paths(raw) == expected
        assert _both_paths(raw.replace(b'"u"', b'"u","n":NaN')) == expected  # json.loads path


def test_implausible_instants_refuse_their_item():
    bad = [
        ("dailies", _daily(summaryId="d2", startTimeInSeconds=10**15)),
        ("dailies", _daily(summaryId="d3", startTimeOffsetInSeconds=10**15)),
        ("dailies", _daily(summaryId="d4", timeOffsetHeartRateSamples={"0": 1, str(10**12): 2})),
        (
            "activityDetails",
            _details(samples=[{"startTimeInSeconds": T0}, {"startTimeInSeconds": 10**16}]),
        ),
        ("activityDetails", _details(laps=[{"startTimeInSeconds": -5}])),
        (
            "sleeps",
            _daily(summaryId="s", sleepLevelsMap={"deep": [{"startTimeInSeconds": 10**15}]}),
        ),
        ("activities", {"userId": "u", "summaryId": "a", "startTimeInSeconds": 10**15}),
        ("epochs", {"userId": "u", "summaryId": "e", "startTimeInSeconds": 500_000_000}),
    ]
    envelope: dict[str, list] = {"dailies": [_daily()]}
    for summary_type, item in bad:
        envelope.setdefault(summary_type, []).append(item)
    parsed = parse_push(json.dumps(envelope).encode())
    tables = parsed.tables()
    assert tables["garmin_dailies"]["summary_id"].to_list() == ["d1"]
    assert sorted(index for index, _ in parsed.refusals) == list(range(1, len(bad) + 1))
    assert all("1989" in reason or "UTC offset" in reason for _, reason in parsed.refusals)
    # Samples past the range never reach bronze, so never the warehouse.
    assert tables["garmin_activity_samples"].height == 0


def test_lone_surrogates_refuse_ids_and_are_replaced_elsewhere():
    raw = (
        b'{"dailies":[{"userId":"\\ud800","summaryId":"x"},'
        b'{"userId":"u","summaryId":"\\udfff"},{"userId":"ok","summaryId":"y"}],'
        b'"activities":[{"userId":"u","summaryId":"a","activityName":"run \\ud83d",'
        b'"\\ud800":"\\udfff"}],'
        b'"\\udc00":[{"userId":"u"}]}'
    )
    parsed = parse_push(raw, erased={"0" * 64: 0.0})
    tables = parsed.tables()
    reasons = dict(parsed.refusals)
    assert "userId" in reasons[0] and "summaryId" in reasons[1] and "Unicode" in reasons[4]
    assert tables["garmin_dailies"]["user_id"].to_list() == ["ok"]
    assert tables["garmin_activities"]["activity_name"].to_list() == ["run \ufffd"]
    tables["garmin_activities"].write_parquet(__import__("io").BytesIO())  # UTF-8 throughout


def test_repeated_envelope_key_refuses_the_body():
    for raw in (
        b'{"dailies":[{"userId":"a","summaryId":"1"}],"dailies":[{"userId":"b","summaryId":"2"}]}',
        b'{"dailies":[],"epochs":[],"dailies":[]}',
        b'{"dailies":[{"userId":"a","n":NaN}],"dailies":[]}',  # the json.loads path
    ):
        with pytest.raises(PayloadError, match="duplicate key 'dailies' in the envelope"):
            parse_push(raw)


@pytest.mark.parametrize("nan", [False, True])
def test_repeated_key_in_an_item_refuses_that_item(nan):
    items = [
        ("dailies", b'{"userId":"a","summaryId":"1","steps":1,"steps":2}'),
        ("epochs", b'{"userId":"a","summaryId":"2","steps":1,"steps":2}'),
        ("activityDetails", b'{"userId":"a","summaryId":"3","summary":{"a":1,"a":2},"samples":[]}'),
        (
            "activityDetails",
            b'{"userId":"a","summaryId":"4","summary":{},'
            b'"samples":[{"startTimeInSeconds":1700000000,"heartRate":1,"heartRate":2}]}',
        ),
        (
            "dailies",
            b'{"userId":"a","summaryId":"5","startTimeInSeconds":1700000000,'
            b'"timeOffsetHeartRateSamples":{"0":1,"0":2}}',
        ),
        ("sleeps", b'{"userId":"a","summaryId":"6","sleepLevelsMap":{"deep":[],"deep":[]}}'),
    ]
    good = b'{"userId":"b","summaryId":"7","startTimeInSeconds":1700000000,"n":NaN}'
    if not nan:
        good = good.replace(b',"n":NaN', b"")
    lists: dict[str, list[bytes]] = {}
    for summary_type, item in items:
        lists.setdefault(summary_type, []).append(item)
    lists.setdefault("epochs", []).append(good)
    parts = [b'"%s":[%s]' % (t.encode(), b",".join(i)) for t, i in lists.items()]
    raw = b"{" + b",".join(parts) + b"}"
    parsed = parse_push(raw)
    assert len(parsed.refusals) == len(items)
    assert all("duplicate key" in reason or "twice" in reason for _, reason in parsed.refusals)
    assert parsed.tables()["garmin_epochs"]["summary_id"].to_list() == ["7"]


def test_stress_details_without_summary_id_is_refused_not_lost():
    series = {"timeOffsetStressLevelValues": {"0": 30}}
    items = [
        {"userId": "u", "startTimeInSeconds": T0, **series},
        {"userId": "u", "summaryId": "", "startTimeInSeconds": T0, **series},
        {"userId": "u", "startTimeInSeconds": T0},  # no series: keyed by its start, as before
    ]
    parsed = parse_push(body(stressDetails=items))
    assert [index for index, _ in parsed.refusals] == [0, 1]
    assert "summaryId" in parsed.refusals[0][1]
    assert parsed.tables()["garmin_stress_details"].height == 1


def test_bounds_are_enforced(monkeypatch):
    import pipelines.garmin.push as push

    raw = body(dailies=[_daily(), _daily(summaryId="d2")])
    with pytest.raises(PayloadError, match="more than 10 bytes"):
        parse_push(raw, max_body_bytes=10)
    monkeypatch.setattr(push, "MAX_ITEMS", 1)
    for path in (raw, raw.replace(b'"u"', b'"u","n":NaN')):
        with pytest.raises(PayloadError, match="more than 1 in one body"):
            parse_push(path)
    monkeypatch.setattr(push, "MAX_ITEMS", 200_000)
    monkeypatch.setattr(push, "MAX_SAMPLES", 2)
    monkeypatch.setattr(push, "MAX_LAPS", 2)
    samples = [{"startTimeInSeconds": T0 + k} for k in range(3)]
    laps = [{"startTimeInSeconds": T0 + k} for k in range(3)]
    parsed = parse_push(
        body(
            activityDetails=[
                _details(samples=samples),
                _details(laps=laps),
                _details(activityName="x" * (push.MAX_RAW_JSON_BYTES + 1)),
                _details(),
            ]
        )
    )
    reasons = dict(parsed.refusals)
    assert "samples" in reasons[0] and "laps" in reasons[1] and "bytes" in reasons[2]
    assert parsed.tables()["garmin_activity_details"].height == 1
    long_id = parse_push(body(epochs=[{"userId": "u" * 257, "summaryId": "e"}]))
    assert "longer than 256" in long_id.refusals[0][1]


def test_numbers_beyond_floats_and_digit_limits_never_raise():
    huge = b"9" * 400
    raw = b'{"activities":[{"userId":"u","summaryId":"x","distanceInMeters":' + huge + b"}]}"
    assert "too large for a float" in parse_push(raw).refusals[0][1]
    raw = b'{"activities":[{"userId":"u","activityName":' + b"9" * 5000 + b"}]}"
    with pytest.raises(PayloadError):
        parse_push(raw)
