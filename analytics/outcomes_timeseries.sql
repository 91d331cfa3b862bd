-- For the requests chart: per time bucket, series and outcome over the last
-- `hours` whole clock hours (default 24), how many requests ended that way.
-- `outcome` is that of outcomes_by_status.sql: 'ok', the HTTP status of a
-- failure ('429', '502', ...), '499' (the client left), 'error after 200' (a
-- stream that failed once started) or 'error' (no status on record). Buckets
-- are `bucket_hours` long (default 1); a series is a provider, or a model when
-- group_by = 'model'. Buckets with no requests are absent.
-- Variables: hours, bucket_hours, group_by.  Reads the hourly rollups.
SELECT
    wlm_bucket_start(60 * coalesce(CAST(getvariable('bucket_hours') AS INTEGER), 1), hour)
        AS bucket,
    CASE coalesce(CAST(getvariable('group_by') AS VARCHAR), 'provider')
        WHEN 'model' THEN model ELSE provider END AS series,
    wlm_outcome(status, http_status) AS outcome,
    sum(requests) AS requests
FROM requests_hourly
WHERE hour >= wlm_window_start(coalesce(CAST(getvariable('hours') AS INTEGER), 24))
GROUP BY 1, 2, 3
ORDER BY bucket, series, outcome;
