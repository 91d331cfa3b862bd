-- For the requests chart of short ranges: per `bucket_minutes` bucket (default
-- 5), series and outcome over exactly the last `hours` hours (default 6), how
-- many requests ended that way: the columns of outcomes_timeseries.sql.
-- Variables: hours, bucket_minutes, group_by.  Reads raw rows: keep `hours`
-- to a day or so; use outcomes_timeseries.sql beyond.
SELECT
    wlm_bucket_start(coalesce(CAST(getvariable('bucket_minutes') AS INTEGER), 5), started_at)
        AS bucket,
    CASE coalesce(CAST(getvariable('group_by') AS VARCHAR), 'provider')
        WHEN 'model' THEN model ELSE provider END AS series,
    wlm_outcome(status, http_status) AS outcome,
    count(*) AS requests
FROM requests
WHERE started_at >= (now() AT TIME ZONE 'UTC') - INTERVAL '1 minute'
    * CAST(coalesce(CAST(getvariable('hours') AS DOUBLE PRECISION), 6) * 60 AS BIGINT)
GROUP BY 1, 2, 3
ORDER BY bucket, series, outcome;
