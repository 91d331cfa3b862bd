-- For charts of short ranges: per `bucket_minutes` bucket (default 5) and
-- series over exactly the last `hours` hours (default 6): the same columns as
-- timeseries.sql, with exact percentiles. A series is a provider, or a model
-- when group_by = 'model'. Buckets with no requests are absent.
-- Variables: hours, bucket_minutes, group_by.  Reads raw rows: keep `hours`
-- to a day or so; use timeseries.sql beyond.
SELECT
    wlm_bucket_start(coalesce(CAST(getvariable('bucket_minutes') AS INTEGER), 5), started_at)
        AS bucket,
    CASE coalesce(CAST(getvariable('group_by') AS VARCHAR), 'provider')
        WHEN 'model' THEN model ELSE provider END AS series,
    count(*) AS requests,
    count(*) FILTER (WHERE status = 'error') AS errors,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    round(avg(latency_ms), 1) AS latency_avg_ms,
    round(percentile_cont(0.50) WITHIN GROUP (ORDER BY latency_ms)
          FILTER (WHERE status = 'ok'), 1) AS latency_p50_ms,
    round(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
          FILTER (WHERE status = 'ok'), 1) AS latency_p95_ms,
    round(avg(ttft_ms), 1) AS ttft_avg_ms,
    round(percentile_cont(0.50) WITHIN GROUP (ORDER BY ttft_ms)
          FILTER (WHERE status = 'ok'), 1) AS ttft_p50_ms,
    round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ttft_ms)
          FILTER (WHERE status = 'ok'), 1) AS ttft_p95_ms,
    round(
        sum(completion_tokens) FILTER (WHERE latency_ms > coalesce(ttft_ms, 0))
            * CAST(1000 AS DOUBLE PRECISION)
        / nullif(sum(latency_ms - coalesce(ttft_ms, 0)) FILTER (
            WHERE completion_tokens IS NOT NULL AND latency_ms > coalesce(ttft_ms, 0)), 0),
        1
    ) AS gen_tokens_per_s,
    sum(cost_usd) AS cost_usd
FROM requests
WHERE started_at >= (now() AT TIME ZONE 'UTC') - INTERVAL '1 minute'
    * CAST(coalesce(CAST(getvariable('hours') AS DOUBLE PRECISION), 6) * 60 AS BIGINT)
GROUP BY 1, 2
ORDER BY bucket, series;
