"""Asset checks at the warehouse boundary: keys, orphans, lap sums, interpolation flags."""

import dagster as dg
from dagster_duckdb import DuckDBResource

# Laps of a session should add up to its distance; the device rounds and GPS drifts.
LAP_SUM_TOLERANCE = 0.02
# Share of lap boundaries allowed outside the sample stream before we call the data suspect.
MAX_OUT_OF_RANGE_SHARE = 0.25


def _scalar(duckdb: DuckDBResource, sql: str, params: list | None = None):
    with duckdb.get_connection() as con:
        return con.execute(sql, params or []).fetchall()[0]


@dg.asset_check(asset="sessions", description="session_id is unique.", blocking=True)
def sessions_unique_ids(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    (duplicates,) = _scalar(
        duckdb,
        "SELECT count(*) FROM (SELECT session_id FROM sessions GROUP BY 1 HAVING count(*) > 1)",
    )
    return dg.AssetCheckResult(passed=duplicates == 0, metadata={"duplicates": duplicates})


@dg.asset_check(asset="intervals", description="Interval keys unique; no orphan intervals.")
def intervals_keys_and_orphans(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    duplicates, orphans = _scalar(
        duckdb,
        """
        SELECT
          (SELECT count(*) FROM (SELECT 1 FROM intervals
             GROUP BY session_id, kind, interval_index HAVING count(*) > 1)),
          (SELECT count(*) FROM intervals i ANTI JOIN sessions s USING (session_id))
        """,
    )
    return dg.AssetCheckResult(
        passed=duplicates == 0 and orphans == 0,
        metadata={"duplicate_keys": duplicates, "orphans": orphans},
    )


@dg.asset_check(asset="intervals", description="Lap distances add up to the session distance.")
def lap_sums_match_sessions(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    checked, off = _scalar(
        duckdb,
        """
        WITH sums AS (
          SELECT session_id, sum(distance_m) AS lap_m FROM intervals
          WHERE kind = 'lap' GROUP BY session_id)
        SELECT count(*),
               count(*) FILTER (WHERE abs(lap_m - s.distance_m)
                                > ? * s.distance_m + 5)
        FROM sums JOIN sessions s USING (session_id)
        WHERE s.distance_m > 0
        """,
        [LAP_SUM_TOLERANCE],
    )
    return dg.AssetCheckResult(
        passed=off == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"sessions_checked": checked, "sessions_off_by_more_than_2pct": off},
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
