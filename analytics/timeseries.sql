-- For charts: per time bucket and series over the last `hours` whole clock
-- hours (default 24): requests, errors, error rate, tokens, average and p50/p95/p99 latency
-- (ms, successful requests, within 2.5%), generation speed, cost (USD). Buckets are
-- `bucket_hours` long (default 1); a series is a provider, or a model when
-- group_by = 'model'. Buckets with no requests are absent. Histograms older
-- than two days are kept per day, so beyond that the percentile columns are
-- filled once per day (in the bucket holding midnight).
-- Variables: hours, bucket_hours, group_by.  Reads the hourly rollups.
WITH totals AS (
    SELECT
        wlm_bucket_start(60 * coalesce(CAST(getvariable('bucket_hours') AS INTEGER), 1), hour)
            AS bucket,
        CASE coalesce(CAST(getvariable('group_by') AS VARCHAR), 'provider')
            WHEN 'model' THEN model ELSE provider END AS series,
        sum(requests) AS requests,
        coalesce(sum(requests) FILTER (WHERE status = 'error'), 0) AS errors,
        sum(prompt_tokens) AS prompt_tokens,
        sum(completion_tokens) AS completion_tokens,
        sum(cost_usd) AS cost_usd,
        sum(latency_ms_sum) / nullif(sum(latency_n), 0) AS latency_avg_ms,
        sum(ttft_ms_sum) / nullif(sum(ttft_n), 0) AS ttft_avg_ms,
        sum(gen_tokens) * CAST(1000 AS DOUBLE PRECISION) / nullif(sum(gen_ms), 0)
            AS gen_tokens_per_s
    FROM requests_hourly
    WHERE hour >= wlm_window_start(coalesce(CAST(getvariable('hours') AS INTEGER), 24))
    GROUP BY 1, 2
),
histogram AS (
    SELECT
        wlm_bucket_start(60 * coalesce(CAST(getvariable('bucket_hours') AS INTEGER), 1), hour)
            AS bucket,
        CASE coalesce(CAST(getvariable('group_by') AS VARCHAR), 'provider')
            WHEN 'model' THEN model ELSE provider END AS series,
        metric,
        bucket AS value_bucket,
        sum(n) AS n
    FROM latency_hourly
    WHERE hour >= wlm_window_start(coalesce(CAST(getvariable('hours') AS INTEGER), 24))
        AND metric IN ('latency_ms', 'ttft_ms')
    GROUP BY 1, 2, 3, 4
),
cumulative AS (
    SELECT
        *,
        sum(n) OVER (PARTITION BY bucket, series, metric ORDER BY value_bucket) AS below,
        sum(n) OVER (PARTITION BY bucket, series, metric) AS total
    FROM histogram
),
percentiles AS (
    SELECT
        bucket,
        series,
        wlm_bucket_value(min(value_bucket) FILTER (
            WHERE metric = 'latency_ms' AND below >= 0.50 * total)) AS latency_p50_ms,
        wlm_bucket_value(min(value_bucket) FILTER (
            WHERE metric = 'latency_ms' AND below >= 0.95 * total)) AS latency_p95_ms,
        wlm_bucket_value(min(value_bucket) FILTER (
            WHERE metric = 'latency_ms' AND below >= 0.99 * total)) AS latency_p99_ms,
        wlm_bucket_value(min(value_bucket) FILTER (
            WHERE metric = 'ttft_ms' AND below >= 0.50 * total)) AS ttft_p50_ms,
        wlm_bucket_value(min(value_bucket) FILTER (
            WHERE metric = 'ttft_ms' AND below >= 0.95 * total)) AS ttft_p95_ms,
        wlm_bucket_value(min(value_bucket) FILTER (
            WHERE metric = 'ttft_ms' AND below >= 0.99 * total)) AS ttft_p99_ms
    FROM cumulative
    GROUP BY 1, 2
)
SELECT
    t.bucket,
    t.series,
    t.requests,
    t.errors,
    t.prompt_tokens,
    t.completion_tokens,
    round(t.latency_avg_ms, 1) AS latency_avg_ms,
    round(p.latency_p50_ms, 1) AS latency_p50_ms,
    round(p.latency_p95_ms, 1) AS latency_p95_ms,
    round(t.ttft_avg_ms, 1) AS ttft_avg_ms,
    round(p.ttft_p50_ms, 1) AS ttft_p50_ms,
    round(p.ttft_p95_ms, 1) AS ttft_p95_ms,
    round(t.gen_tokens_per_s, 1) AS gen_tokens_per_s,
    round(CAST(t.errors AS DOUBLE PRECISION) / t.requests, 4) AS error_rate,
    round(p.latency_p99_ms, 1) AS latency_p99_ms,
    round(p.ttft_p99_ms, 1) AS ttft_p99_ms,
    t.cost_usd
FROM totals AS t
LEFT JOIN percentiles AS p ON p.bucket = t.bucket AND p.series IS NOT DISTINCT FROM t.series
ORDER BY t.bucket, t.series;
