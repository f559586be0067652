"""Every Garmin push summary type: typed bronze columns, time series exploded, ids and times.

One ``SummarySpec`` per push key says which documented fields become typed columns (units in
the names), which instant the summary is dated by, which time-offset maps are exploded into the
long ``garmin_timeseries`` table, and which user permission covers it. Fields not listed stay in
``raw_json``; summary keys without a spec land in ``garmin_other_summaries`` and are reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from pipelines.garmin.fields import (
    MAX_EPOCH_S,
    MIN_EPOCH_S,
    OFFSET_KEYS,
    FieldError,
    Undecoded,
    coerce,
    decoded,
    epoch_s,
    int_map,
    is_text,
    local_from_epoch,
    polars_dtype,
    text,
    utc_from_epoch,
    utc_offset_s,
)

ACTIVITY_EXPORT = "ACTIVITY_EXPORT"
HEALTH_EXPORT = "HEALTH_EXPORT"
MCT_EXPORT = "MCT_EXPORT"

# Garmin uses negative stress/body-battery values (-1 … -5) for "no value" (off wrist, motion…).
SENTINEL_NEGATIVE_SERIES = frozenset({"stress_level", "body_battery"})


@dataclass(frozen=True)
class SummarySpec:
    table: str
    fields: tuple[tuple[str, str, str], ...]
    permission: str | None = HEALTH_EXPORT
    time_key: str = "startTimeInSeconds"
    offset_keys: tuple[str, ...] = OFFSET_KEYS
    # (Garmin map key, series name): {"<offset s>": value} maps → garmin_timeseries rows
    series: tuple[tuple[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


_DAY = (("calendarDate", "calendar_date", "str"), ("durationInSeconds", "duration_s", "int"))

SPECS: dict[str, SummarySpec] = {
    "dailies": SummarySpec(
        "garmin_dailies",
        (
            *_DAY,
            ("activityType", "activity_type", "str"),
            ("steps", "steps", "int"),
            ("stepsGoal", "steps_goal", "int"),
            ("distanceInMeters", "distance_m", "float"),
            ("activeTimeInSeconds", "active_time_s", "int"),
            ("activeKilocalories", "active_kcal", "float"),
            ("bmrKilocalories", "bmr_kcal", "float"),
            ("consumedCalories", "consumed_kcal", "float"),
            ("moderateIntensityDurationInSeconds", "moderate_intensity_s", "int"),
            ("vigorousIntensityDurationInSeconds", "vigorous_intensity_s", "int"),
            ("intensityDurationGoalInSeconds", "intensity_goal_s", "int"),
            ("floorsClimbed", "floors_climbed", "int"),
            ("floorsClimbedGoal", "floors_climbed_goal", "int"),
            ("minHeartRateInBeatsPerMinute", "min_hr_bpm", "int"),
            ("averageHeartRateInBeatsPerMinute", "avg_hr_bpm", "int"),
            ("maxHeartRateInBeatsPerMinute", "max_hr_bpm", "int"),
            ("restingHeartRateInBeatsPerMinute", "resting_hr_bpm", "int"),
            ("averageStressLevel", "avg_stress_level", "int"),
            ("averageStresslevel", "avg_stress_level_typo", "int"),  # seen in the wild
            ("maxStressLevel", "max_stress_level", "int"),
            ("stressDurationInSeconds", "stress_s", "int"),
            ("restStressDurationInSeconds", "rest_stress_s", "int"),
            ("activityStressDurationInSeconds", "activity_stress_s", "int"),
            ("lowStressDurationInSeconds", "low_stress_s", "int"),
            ("mediumStressDurationInSeconds", "medium_stress_s", "int"),
            ("highStressDurationInSeconds", "high_stress_s", "int"),
            ("stressQualifier", "stress_qualifier", "str"),
            ("netKilocaloriesGoal", "net_kcal_goal", "float"),
            ("bodyBatteryChargedValue", "body_battery_charged", "int"),
            ("bodyBatteryDrainedValue", "body_battery_drained", "int"),
        ),
        series=(("timeOffsetHeartRateSamples", "heart_rate"),),
    ),
    "epochs": SummarySpec(
        "garmin_epochs",
        (
            ("durationInSeconds", "duration_s", "int"),
            ("activityType", "activity_type", "str"),
            ("activeTimeInSeconds", "active_time_s", "int"),
            ("steps", "steps", "int"),
            ("distanceInMeters", "distance_m", "float"),
            ("activeKilocalories", "active_kcal", "float"),
            ("met", "met", "float"),
            ("intensity", "intensity", "str"),
            ("meanMotionIntensity", "mean_motion_intensity", "float"),
            ("maxMotionIntensity", "max_motion_intensity", "float"),
        ),
    ),
    "sleeps": SummarySpec(
        "garmin_sleeps",
        (
            *_DAY,
            ("deepSleepDurationInSeconds", "deep_sleep_s", "int"),
            ("lightSleepDurationInSeconds", "light_sleep_s", "int"),
            ("remSleepInSeconds", "rem_sleep_s", "int"),
            ("awakeDurationInSeconds", "awake_s", "int"),
            ("unmeasurableSleepDurationInSeconds", "unmeasurable_sleep_s", "int"),
            ("unmeasurableSleepInSeconds", "unmeasurable_sleep_s_alt", "int"),  # older spelling
            ("validation", "validation", "str"),
        ),
        series=(
            ("timeOffsetSleepRespiration", "sleep_respiration"),
            ("timeOffsetSleepSpo2", "sleep_spo2"),
        ),
    ),
    "bodyComps": SummarySpec(
        "garmin_body_comps",
        (
            ("muscleMassInGrams", "muscle_mass_g", "float"),
            ("boneMassInGrams", "bone_mass_g", "float"),
            ("bodyWaterInPercent", "body_water_pct", "float"),
            ("bodyFatInPercent", "body_fat_pct", "float"),
            ("bodyMassIndex", "bmi", "float"),
            ("weightInGrams", "weight_g", "float"),
        ),
        time_key="measurementTimeInSeconds",
        offset_keys=("measurementTimeOffsetInSeconds",),
    ),
    "stressDetails": SummarySpec(
        "garmin_stress_details",
        _DAY,
        series=(
            ("timeOffsetStressLevelValues", "stress_level"),
            ("timeOffsetBodyBatteryValues", "body_battery"),
        ),
    ),
    "userMetrics": SummarySpec(
        "garmin_user_metrics",
        (
            ("calendarDate", "calendar_date", "str"),
            ("vo2Max", "vo2max", "float"),
            ("vo2MaxCycling", "vo2max_cycling", "float"),
            ("enhanced", "enhanced", "bool"),
            ("fitnessAge", "fitness_age", "int"),
        ),
    ),
    "pulseox": SummarySpec(
        "garmin_pulse_ox",
        (*_DAY, ("onDemand", "on_demand", "bool")),
        series=(("timeOffsetSpo2Values", "spo2"),),
    ),
    "allDayRespiration": SummarySpec(
        "garmin_respiration",
        (("durationInSeconds", "duration_s", "int"),),
        series=(("timeOffsetEpochToBreaths", "breaths_per_min"),),
    ),
    "healthSnapshot": SummarySpec("garmin_health_snapshots", _DAY),
    "hrv": SummarySpec(
        "garmin_hrv",
        (
            *_DAY,
            ("lastNightAvg", "last_night_avg_ms", "float"),
            ("lastNight5MinHigh", "last_night_5min_high_ms", "float"),
        ),
        series=(("hrvValues", "hrv_ms"),),
    ),
    "bloodPressures": SummarySpec(
        "garmin_blood_pressures",
        (
            ("systolic", "systolic_mmhg", "int"),
            ("diastolic", "diastolic_mmhg", "int"),
            ("pulse", "pulse_bpm", "int"),
            ("sourceType", "source_type", "str"),
        ),
        time_key="measurementTimeInSeconds",
        offset_keys=("measurementTimeOffsetInSeconds",),
    ),
    "skinTemp": SummarySpec(
        "garmin_skin_temp",
        (*_DAY, ("avgDeviationCelsius", "avg_deviation_c", "float")),
    ),
    "moveIQActivities": SummarySpec(
        "garmin_move_iq",
        (
            *_DAY,
            ("activityType", "activity_type", "str"),
            ("activitySubType", "activity_sub_type", "str"),
        ),
        permission=ACTIVITY_EXPORT,
    ),
    "mct": SummarySpec(
        "garmin_mct",
        (
            ("periodStartDate", "period_start_date", "str"),
            ("dayInCycle", "day_in_cycle", "int"),
            ("periodLength", "period_length_days", "int"),
            ("currentPhase", "current_phase", "int"),
            ("currentPhaseType", "current_phase_type", "str"),
            ("lengthOfCurrentPhase", "current_phase_length_days", "int"),
            ("daysUntilNextPhase", "days_until_next_phase", "int"),
            ("predictedCycleLength", "predicted_cycle_length_days", "int"),
            ("isPredictedCycle", "is_predicted_cycle", "bool"),
            ("cycleLength", "cycle_length_days", "int"),
            ("hasSpecifiedCycleLength", "has_specified_cycle_length", "bool"),
            ("hasSpecifiedPeriodLength", "has_specified_period_length", "bool"),
        ),
        permission=MCT_EXPORT,
        time_key="lastUpdatedTimeInSeconds",
    ),
    "userPermissionsChange": SummarySpec(
        "garmin_permission_changes",
        (),
        permission=None,
        time_key="changeTimeInSeconds",
    ),
    "deregistrations": SummarySpec("garmin_deregistrations", (), permission=None),
}

COMMON_SCHEMA: dict[str, pl.DataType] = {
    "summary_type": pl.String(),
    "item_index": pl.Int64(),
    "user_id": pl.String(),
    "summary_id": pl.String(),
    "start_time_utc": pl.Datetime("us", "UTC"),
    "start_time_local": pl.Datetime("us"),
    "utc_offset_s": pl.Int64(),
}


def spec_schema(spec: SummarySpec) -> dict[str, pl.DataType]:
    schema = {**COMMON_SCHEMA}
    for _, column, kind in spec.fields:
        schema[column] = polars_dtype(kind)
    if spec.table == "garmin_permission_changes":
        schema["permissions"] = pl.List(pl.String())
    schema["raw_json"] = pl.String()
    return schema


TIMESERIES_SCHEMA: dict[str, pl.DataType] = {
    "summary_type": pl.String(),
    "summary_id": pl.String(),
    "user_id": pl.String(),
    "series": pl.String(),
    "offset_s": pl.Int64(),
    "time_utc": pl.Datetime("us", "UTC"),
    "value": pl.Float64(),
}

SLEEP_LEVELS_SCHEMA: dict[str, pl.DataType] = {
    "summary_id": pl.String(),
    "user_id": pl.String(),
    "level": pl.String(),
    "start_time_utc": pl.Datetime("us", "UTC"),
    "end_time_utc": pl.Datetime("us", "UTC"),
}

SUMMARY_TABLES: dict[str, dict[str, pl.DataType]] = {
    spec.table: spec_schema(spec) for spec in SPECS.values()
} | {"garmin_timeseries": TIMESERIES_SCHEMA, "garmin_sleep_levels": SLEEP_LEVELS_SCHEMA}


def summary_row(spec: SummarySpec, keys: dict[str, Any], item: dict[str, Any]) -> dict:
    start = epoch_s(item, spec.time_key)
    offset = utc_offset_s(item, spec.offset_keys)
    row = {
        **keys,
        "start_time_utc": utc_from_epoch(start),
        "start_time_local": local_from_epoch(start, offset),
        "utc_offset_s": offset,
    }
    for key, column, kind in spec.fields:
        row[column] = coerce(item, key, kind)
    if spec.table == "garmin_permission_changes":
        permissions = item.get("permissions") or []
        if not isinstance(permissions, list) or not all(
            isinstance(p, str) and is_text(p) for p in permissions
        ):
            raise FieldError("field 'permissions': expected a list of strings (valid Unicode)")
        row["permissions"] = permissions
    return row


class SeriesRows:
    """Time-series rows of many summaries, kept as arrays until one frame is built: a Polars
    frame per summary would cost more than parsing the summary itself."""

    def __init__(self) -> None:
        self.labels: list[tuple[Any, Any, Any, str]] = []  # type, id, user, series per part
        self.starts: list[int | None] = []
        self.offsets: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.nulls: list[np.ndarray | None] = []

    def __len__(self) -> int:
        return len(self.offsets)

    def merge(self, other: SeriesRows) -> None:
        self.labels += other.labels
        self.starts += other.starts
        self.offsets += other.offsets
        self.values += other.values
        self.nulls += other.nulls

    def add_item(self, spec: SummarySpec, keys: dict[str, Any], item: dict[str, Any]) -> None:
        """Time-offset maps of one summary → rows (offsets are seconds after its start).

        FieldError when an offset repeats or dates a value outside the plausible instants."""
        start = epoch_s(item, spec.time_key)
        parts = []
        for key, series in spec.series:
            values = item.get(key)
            plain = int_map(values.raw) if isinstance(values, Undecoded) else None
            if plain is not None:  # the common shape, read without a Python object per entry
                offsets, numbers = plain
                nulls = np.zeros(len(numbers), bool)
            else:
                offset_series, number_series = _series_values(key, decoded(values))
                if offset_series is None:
                    continue
                offsets = offset_series.to_numpy()
                nulls = number_series.is_null().to_numpy()
                numbers = number_series.fill_null(0.0).to_numpy()
            if len(offsets):
                _check_offsets(key, offsets, start)
            if series in SENTINEL_NEGATIVE_SERIES:
                nulls = nulls | (numbers < 0)  # = when(value < 0).then(None)
            # Kept until the frames are built: as narrow as the values allow (offsets and
            # heart rates fit 32 bits), and no null mask when nothing is null.
            parts.append(
                (series, _narrow(offsets), _narrow(numbers), nulls if nulls.any() else None)
            )
        # Only once every map of the item parsed: a refused item adds nothing.
        for series, offsets, numbers, nulls in parts:
            self.labels.append((keys["summary_type"], keys["summary_id"], keys["user_id"], series))
            self.starts.append(start)
            self.offsets.append(offsets)
            self.values.append(numbers)
            self.nulls.append(nulls)

    def n_rows(self) -> int:
        return sum(map(len, self.offsets))

    def frame(self) -> pl.DataFrame:
        parts = list(self.frames())
        if not parts:
            return pl.DataFrame(schema=TIMESERIES_SCHEMA)
        return pl.concat(parts, how="vertical", rechunk=False)

    def frames(self, max_rows: int = 500_000) -> Iterator[pl.DataFrame]:
        """The rows as frames of about ``max_rows`` (whole maps: one larger map makes one
        larger frame), built one at a time: a frame's temporaries never exist for all rows."""
        first, rows = 0, 0
        for k, offsets in enumerate(self.offsets):
            rows += len(offsets)
            if rows >= max_rows:
                yield self._frame(first, k + 1)
                first, rows = k + 1, 0
        if first < len(self.offsets):
            yield self._frame(first, len(self.offsets))

    def _frame(self, lo: int, hi: int) -> pl.DataFrame:
        """Rows of maps ``lo`` … ``hi - 1``."""
        offsets_parts = self.offsets[lo:hi]
        counts = np.fromiter(map(len, offsets_parts), np.int64, hi - lo)
        part = np.repeat(np.arange(hi - lo), counts)
        labels = pl.DataFrame(
            self.labels[lo:hi],
            schema={
                "summary_type": pl.String(),
                "summary_id": pl.String(),
                "user_id": pl.String(),
                "series": pl.String(),
            },
            orient="row",
        )[part]
        starts = self.starts[lo:hi]
        no_start = np.fromiter((s is None for s in starts), bool, hi - lo)[part]
        start = np.fromiter((s or 0 for s in starts), np.int64, hi - lo)[part]
        offsets = np.concatenate(offsets_parts).astype(np.int64)
        nulls = np.concatenate(
            [
                np.zeros(len(o), bool) if n is None else n
                for o, n in zip(offsets_parts, self.nulls[lo:hi], strict=True)
            ]
        )
        # = pl.from_epoch(start + offset_s, "s").dt.replace_time_zone("UTC"): µs since epoch
        time_us = pl.Series("time_utc", offsets) + pl.Series(start)
        time_utc = (time_us * 1_000_000).cast(pl.Datetime("us", "UTC"))
        return (
            labels.with_columns(
                pl.Series("offset_s", offsets),
                time_utc.alias("time_utc"),
                pl.Series("value", np.concatenate(self.values[lo:hi]).astype(np.float64)),
                pl.Series("_no_start", no_start),
                pl.Series("_null", nulls),
            )
            .with_columns(
                pl.when(pl.col("_no_start")).then(None).otherwise("time_utc").alias("time_utc"),
                pl.when(pl.col("_null")).then(None).otherwise("value").alias("value"),
            )
            .select(list(TIMESERIES_SCHEMA))
        )


def _narrow(values: np.ndarray) -> np.ndarray:
    """Integers as int32 when they fit (exactly the same numbers), anything else as is."""
    fits = values.dtype == np.int64 and len(values) > 0
    if fits and values.min() >= -(2**31) and values.max() < 2**31:
        return values.astype(np.int32)
    return values


def _check_offsets(key: str, offsets: np.ndarray, start: int | None) -> None:
    """Offsets unique, and every instant (start + offset) plausible; without a start, offsets
    no longer than the plausible span (the instants stay null)."""
    lo, hi = int(offsets.min()), int(offsets.max())
    first, last = (lo + start, hi + start) if start is not None else (lo, hi)
    low, high = (
        (MIN_EPOCH_S, MAX_EPOCH_S)
        if start is not None
        else (MIN_EPOCH_S - MAX_EPOCH_S, MAX_EPOCH_S - MIN_EPOCH_S)
    )
    if first < low or last >= high:
        raise FieldError(f"field {key!r}: an offset dates a value outside 1989 … 2100 UTC")
    # Maps come in offset order: the sort only when they do not.
    ordered = offsets if np.all(offsets[1:] > offsets[:-1]) else np.sort(offsets)
    if ordered is not offsets and np.any(ordered[1:] == ordered[:-1]):
        raise FieldError(f"field {key!r}: an offset occurs twice")


def _series_values(key: str, values: Any) -> tuple[pl.Series | None, pl.Series | None]:
    """A decoded time-offset map as (offsets, values); (None, None) when empty or absent."""
    if not values:
        return None, None
    if not isinstance(values, dict):
        raise FieldError(f"field {key!r}: expected an object of offset → value")
    try:
        offsets = pl.Series(list(values.keys()), dtype=pl.String()).cast(pl.Int64)
        numbers = pl.Series(list(values.values()), dtype=pl.Float64(), strict=False)
    except (pl.exceptions.PolarsError, UnicodeEncodeError) as exc:  # a lone surrogate too
        raise FieldError(f"field {key!r}: offsets must be integers, values numbers: {exc}") from exc
    nulls = numbers.null_count()
    if nulls and nulls > sum(v is None for v in values.values()):
        raise FieldError(f"field {key!r}: values must be numbers")
    return offsets, numbers


def _constant(value: Any, dtype: pl.DataType, n: int) -> pl.Series:
    return pl.Series([value], dtype=dtype).new_from_index(0, n)


def sleep_levels_frame(keys: dict[str, Any], item: dict[str, Any]) -> pl.DataFrame:
    levels = item.get("sleepLevelsMap") or {}
    if not isinstance(levels, dict):
        raise FieldError("field 'sleepLevelsMap': expected an object")
    rows = []
    for level, spans in levels.items():
        level = text(level)
        if not isinstance(spans, list):
            raise FieldError(f"sleepLevelsMap.{level}: expected a list")
        for span in spans:
            if not isinstance(span, dict):
                raise FieldError(f"sleepLevelsMap.{level}: expected objects")
            rows.append(
                {
                    "summary_id": keys["summary_id"],
                    "user_id": keys["user_id"],
                    "level": level,
                    "start_time_utc": utc_from_epoch(epoch_s(span, "startTimeInSeconds")),
                    "end_time_utc": utc_from_epoch(epoch_s(span, "endTimeInSeconds")),
                }
            )
    return pl.DataFrame(rows, schema=SLEEP_LEVELS_SCHEMA)
