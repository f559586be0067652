-- Analyst views over the warehouse tables (no parameters; rebuilt with every warehouse).

-- Weekly volume per user and sport; weeks start on Monday of the athlete's local calendar.
CREATE OR REPLACE VIEW weekly_volume AS
SELECT
    user_id,
    sport,
    CAST(date_trunc('week', coalesce(start_time_local, CAST(start_time_utc AS TIMESTAMP))) AS DATE)
        AS week_start,
    count(*) AS sessions,
    round(sum(distance_m) / 1000, 3) AS distance_km,
    round(sum(timer_s) / 3600, 3) AS timer_h,
    round(sum(elapsed_s) / 3600, 3) AS elapsed_h
FROM sessions
WHERE NOT is_multisport_parent  -- its legs are counted
GROUP BY ALL
ORDER BY user_id, week_start, sport;

-- Training load per user and local day: Banister TRIMP from timer time and average heart rate
-- relative to the athlete's highest recorded heart rate (no resting HR needed), with the
-- classic 7-day (acute) and 42-day (chronic) averages and their difference (form).
CREATE OR REPLACE VIEW training_load AS
WITH hr_max AS (
    SELECT user_id, max(max_hr) AS hr_max FROM sessions GROUP BY user_id
),
daily AS (
    SELECT
        s.user_id,
        CAST(coalesce(s.start_time_local, CAST(s.start_time_utc AS TIMESTAMP)) AS DATE) AS day,
        sum(s.timer_s) / 60 AS minutes,
        sum(
            s.timer_s / 60 * (s.avg_hr / h.hr_max) * 0.64 * exp(1.92 * (s.avg_hr / h.hr_max))
        ) AS trimp
    FROM sessions AS s
    JOIN hr_max AS h USING (user_id)
    WHERE NOT s.is_multisport_parent
    GROUP BY ALL
),
days AS (
    SELECT user_id, CAST(day AS DATE) AS day
    FROM (SELECT user_id, min(day) AS first_day, max(day) AS last_day FROM daily GROUP BY 1),
         LATERAL generate_series(first_day, last_day, INTERVAL 1 DAY) AS g(day)
)
SELECT
    d.user_id,
    d.day,
    coalesce(x.minutes, 0) AS minutes,
    round(coalesce(x.trimp, 0), 2) AS trimp,
    round(avg(coalesce(x.trimp, 0)) OVER w7, 2) AS acute_load_7d,
    round(avg(coalesce(x.trimp, 0)) OVER w42, 2) AS chronic_load_42d,
    round(avg(coalesce(x.trimp, 0)) OVER w42 - avg(coalesce(x.trimp, 0)) OVER w7, 2) AS form
FROM days AS d
LEFT JOIN daily AS x USING (user_id, day)
WINDOW
    w7 AS (PARTITION BY d.user_id ORDER BY d.day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW),
    w42 AS (PARTITION BY d.user_id ORDER BY d.day ROWS BETWEEN 41 PRECEDING AND CURRENT ROW)
ORDER BY d.user_id, d.day;

-- Plan compliance per user and week of the planned date.
CREATE OR REPLACE VIEW weekly_compliance AS
SELECT
    user_id,
    CAST(date_trunc('week', planned_date) AS DATE) AS week_start,
    count(*) AS planned,
    count(*) FILTER (WHERE status = 'completed') AS completed,
    count(*) FILTER (WHERE status = 'partial') AS partial,
    count(*) FILTER (WHERE status = 'missed') AS missed,
    round(avg(compliance_pct), 1) AS avg_compliance_pct,
    count(*) FILTER (WHERE grade = 'green') AS green,
    count(*) FILTER (WHERE grade = 'yellow') AS yellow,
    count(*) FILTER (WHERE grade = 'red') AS red
FROM plan_matches
GROUP BY ALL
ORDER BY user_id, week_start;
