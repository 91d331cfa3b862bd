-- For charts of short ranges: per `bucket_minutes` bucket (default 5) and
-- series over exactly the last `hours` hours (default 6): the same columns as
-- timeseries.sql, with exact percentiles. A series is a provider, or a model
-- when group_by = 'model'. Buckets with no requests are absent.
-- Variables: hours, bucket_minutes, group_by.  Reads raw rows: keep `hours`
-- to a day or so; use timeseries.sql beyond.
SELECT
    time_bucket(to_minutes(coalesce(getvariable('bucket_minutes'), 5)::BIGINT), started_at)
        AS bucket,
    CASE coalesce(getvariable('group_by'), 'provider')
        WHEN 'model' THEN model ELSE provider END AS series,
    count(*) AS requests,
    count(*) FILTER (WHERE status = 'error') AS errors,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    round(avg(latency_ms), 1) AS latency_avg_ms,
    round(quantile_cont(latency_ms, 0.50) FILTER (WHERE status = 'ok'), 1) AS latency_p50_ms,
    round(quantile_cont(latency_ms, 0.95) FILTER (WHERE status = 'ok'), 1) AS latency_p95_ms,
    round(avg(ttft_ms), 1) AS ttft_avg_ms,
    round(quantile_cont(ttft_ms, 0.50) FILTER (WHERE status = 'ok'), 1) AS ttft_p50_ms,
    round(quantile_cont(ttft_ms, 0.95) FILTER (WHERE status = 'ok'), 1) AS ttft_p95_ms,
    round(
        sum(completion_tokens) FILTER (WHERE latency_ms > coalesce(ttft_ms, 0)) * 1000.0
        / nullif(sum(latency_ms - coalesce(ttft_ms, 0)) FILTER (
            WHERE completion_tokens IS NOT NULL AND latency_ms > coalesce(ttft_ms, 0)), 0),
        1
    ) AS gen_tokens_per_s
FROM requests
WHERE started_at >= (now() AT TIME ZONE 'UTC')
    - to_minutes(CAST(coalesce(getvariable('hours'), 6) * 60 AS BIGINT))
GROUP BY ALL
ORDER BY bucket, series;
