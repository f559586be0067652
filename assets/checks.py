"""Asset checks at the layer boundaries: keys, orphans, lap sums, interpolation flags,
warehouse in step with silver, freshness."""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from pipelines.lake.partitions import partition_files
from pipelines.lake.stage import pending_files
from pipelines.resources import WearhouseLake
from pipelines.warehouse.tables import table as declaration
from pipelines.warehouse.tables import tables

# Laps of a session should add up to its distance; the device rounds and GPS drifts.
LAP_SUM_TOLERANCE = 0.02
# Share of lap boundaries allowed outside the sample stream before we call the data suspect.
MAX_OUT_OF_RANGE_SHARE = 0.25


def _scalar(duckdb: DuckDBResource, sql: str, params: list | None = None):
    with duckdb.get_connection() as con:
        return con.execute(sql, params or []).fetchall()[0]


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "keys_unique",
            asset=t.name,
            description=f"No two rows share the declared key ({', '.join(t.key)}).",
            # Every consumer joins on session_id: a duplicate session stops the run.
            blocking=t.name == "sessions",
        )
        for t in tables()
        if t.key
    ],
    can_subset=True,
)
def declared_keys_unique(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource):
    """One check per table with a key in sql/tables.yaml (one connection for all)."""
    with duckdb.get_connection() as con:
        for key in context.selected_asset_check_keys:
            declared = declaration(key.asset_key.path[-1])
            columns = ", ".join(f'"{c}"' for c in declared.key)  # from the declarations
            (duplicates,) = con.execute(
                f'SELECT count(*) FROM (SELECT 1 FROM "{declared.name}" GROUP BY {columns} '
                "HAVING count(*) > 1)"
            ).fetchall()[0]
            yield dg.AssetCheckResult(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=duplicates == 0,
                metadata={"duplicate_keys": duplicates},
            )


@dg.asset_check(asset="intervals", description="Every interval belongs to a session.")
def intervals_without_session(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    (orphans,) = _scalar(
        duckdb, "SELECT count(*) FROM intervals i ANTI JOIN sessions s USING (session_id)"
    )
    return dg.AssetCheckResult(passed=orphans == 0, metadata={"orphans": orphans})


# Sessions whose laps and session distance disagree (all columns for the metadata preview).
LAP_SUMS_SQL = """
WITH sums AS (
  SELECT session_id, sum(distance_m) AS lap_m, count(*) AS laps,
         sum(start_out_of_range::INT + end_out_of_range::INT) AS out_of_range
  FROM intervals WHERE kind = 'lap' GROUP BY session_id)
SELECT session_id, s.distance_m AS session_m, round(lap_m, 1) AS lap_m, laps, out_of_range,
       abs(lap_m - s.distance_m) > ? * s.distance_m + 5 AS off
FROM sums JOIN sessions s USING (session_id)
WHERE s.distance_m > 0
"""


@dg.asset_check(asset="intervals", description="Lap distances add up to the session distance.")
def lap_sums_match_sessions(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        checked, off = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE off) FROM ({LAP_SUMS_SQL})",
            [LAP_SUM_TOLERANCE],
        ).fetchall()[0]
        # The worst few, to start from (out-of-range boundaries often explain them).
        cursor = con.execute(
            f"SELECT * EXCLUDE (off) FROM ({LAP_SUMS_SQL}) WHERE off "
            "ORDER BY abs(lap_m - session_m) / session_m DESC, session_id LIMIT 5",
            [LAP_SUM_TOLERANCE],
        )
        names = [column[0] for column in cursor.description]
        worst = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return dg.AssetCheckResult(
        passed=off == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "sessions_checked": checked,
            "sessions_off_by_more_than_2pct": off,
            "worst_sessions": dg.MetadataValue.json(worst),
        },
    )


@dg.asset_check(asset="intervals", description="Few boundaries fall outside the samples.")
def interpolation_flags_within_bounds(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    boundaries, out_of_range, interpolated = _scalar(
        duckdb,
        """
        SELECT 2 * count(*),
               sum(start_out_of_range::INT + end_out_of_range::INT),
               sum(start_interpolated::INT + end_interpolated::INT)
        FROM intervals
        """,
    )
    share = (out_of_range or 0) / boundaries if boundaries else 0.0
    return dg.AssetCheckResult(
        passed=share <= MAX_OUT_OF_RANGE_SHARE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "boundaries": boundaries,
            "out_of_range": out_of_range or 0,
            "interpolated": interpolated or 0,
            "out_of_range_share": share,
        },
    )


# Records and the device's own lap totals disagree by themselves (its internal full-rate data):
# real files show a median near 0.15 % and a 95th percentile under 1 %.
DEVICE_MEDIAN_BOUND = 0.01
DEVICE_P95_BOUND = 0.05


@dg.asset_check(
    asset="intervals",
    description="FIT laps: |computed − device| lap distance stays within bounds "
    "(median ≤ 1 %, p95 ≤ 5 % of laps ≥ 200 m).",
)
def laps_agree_with_device_totals(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    laps, median, p95 = _scalar(
        duckdb,
        """
        SELECT count(*),
               median(abs(distance_m - device_distance_m) / device_distance_m),
               quantile_cont(abs(distance_m - device_distance_m) / device_distance_m, 0.95)
        FROM intervals
        WHERE kind = 'lap' AND device_distance_m >= 200 AND distance_m IS NOT NULL
        """,
    )
    passed = laps == 0 or (median <= DEVICE_MEDIAN_BOUND and p95 <= DEVICE_P95_BOUND)
    return dg.AssetCheckResult(
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "laps_compared": laps,
            "median_rel_error": float(median or 0.0),
            "p95_rel_error": float(p95 or 0.0),
        },
    )


@dg.asset_check(
    asset="sessions",
    description="Freshness: every landed file has been taken in by its stage (pings waiting "
    "for a retry are reported, not failed).",
)
def landing_fully_ingested(lake: WearhouseLake) -> dg.AssetCheckResult:
    waiting = {
        stage: pending_files(lake.layout, kind, stage).height
        for kind, stage in (
            ("garmin_push", "garmin_push"),
            ("garmin_fetched", "garmin_push"),
            ("fit", "fit"),
            ("plan", "plans"),
            ("garmin_ping", "garmin_ping"),
        )
    }
    stuck = sum(n for stage, n in waiting.items() if stage != "garmin_ping")
    return dg.AssetCheckResult(
        passed=stuck == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"files_waiting": waiting},
    )


# Warehouse table → the silver table it is built from (one row each).
SILVER_OF = {
    "sessions": "sessions",
    "intervals": "intervals",
    "samples": "samples",
    "daily_summaries": "garmin_dailies",
    "sleep_sessions": "garmin_sleeps",
    "plan_matches": "plan_matches",
}


@dg.asset_check(
    asset="samples",
    description="Incremental runs stay in step with silver: each warehouse table has as many "
    "rows as the silver partitions it is built from.",
    blocking=True,
)
def warehouse_matches_silver(lake: WearhouseLake, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    counts = {}
    for table, silver in SILVER_OF.items():
        (rows,) = _scalar(duckdb, f'SELECT count(*) FROM "{table}"')  # names from SILVER_OF
        files = partition_files(lake.layout, silver)
        in_silver = pl.scan_parquet(files).select(pl.len()).collect().item() if files else 0
        counts[table] = {"warehouse": rows, "silver": in_silver}
    return dg.AssetCheckResult(
        passed=all(c["warehouse"] == c["silver"] for c in counts.values()),
        metadata={"rows": counts},
    )
