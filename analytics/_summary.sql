-- wlm_summary(hours, per_model): the table behind summary_by_provider.sql and
-- summary_by_model.sql, one row per provider (model NULL) or, with per_model,
-- per provider and model, over the last `hours` whole clock hours (the current
-- one included): requests, errors, cancelled, error rate, latency and
-- time-to-first-token percentiles (ms, successful requests, within 2.5%),
-- average latency, tokens in and out, generation speed (tokens/s: the median
-- request, and completion tokens over generation time), cost.  Unordered.
-- Reads the hourly rollups, so it stays fast at any size.  wlm (re)creates it
-- each time it opens the file, so a copy has it too:
--     SELECT * FROM wlm_summary(168, true) ORDER BY requests DESC;
CREATE OR REPLACE MACRO wlm_summary(hours, per_model) AS TABLE
WITH totals AS (
    SELECT
        provider,
        CASE WHEN per_model THEN model END AS model,
        sum(requests) AS requests,
        sum(requests) FILTER (WHERE status = 'error') AS errors,
        sum(requests) FILTER (WHERE status = 'cancelled') AS cancelled,
        sum(prompt_tokens) AS prompt_tokens,
        sum(completion_tokens) AS completion_tokens,
        sum(cost_usd) AS cost_usd,
        sum(latency_ms_sum) / nullif(sum(latency_n), 0) AS latency_avg_ms,
        sum(gen_tokens) * 1000.0 / nullif(sum(gen_ms), 0) AS gen_tokens_per_s
    FROM requests_hourly
    WHERE hour >= wlm_window_start(hours)
    GROUP BY ALL
),
histogram AS (
    SELECT
        provider,
        CASE WHEN per_model THEN model END AS model,
        metric,
        bucket,
        sum(n) AS n
    FROM latency_hourly
    WHERE hour >= wlm_window_start(hours)
    GROUP BY ALL
),
cumulative AS (
    SELECT
        *,
        sum(n) OVER (PARTITION BY provider, model, metric ORDER BY bucket) AS below,
        sum(n) OVER (PARTITION BY provider, model, metric) AS total
    FROM histogram
),
percentiles AS (
    SELECT
        provider, model,
        metric,
        wlm_bucket_value(min(bucket) FILTER (WHERE below >= 0.50 * total)) AS p50,
        wlm_bucket_value(min(bucket) FILTER (WHERE below >= 0.95 * total)) AS p95,
        wlm_bucket_value(min(bucket) FILTER (WHERE below >= 0.99 * total)) AS p99
    FROM cumulative
    GROUP BY ALL
),
pivoted AS (
    SELECT
        provider, model,
        any_value(p50) FILTER (WHERE metric = 'latency_ms') AS latency_p50_ms,
        any_value(p95) FILTER (WHERE metric = 'latency_ms') AS latency_p95_ms,
        any_value(p99) FILTER (WHERE metric = 'latency_ms') AS latency_p99_ms,
        any_value(p50) FILTER (WHERE metric = 'ttft_ms') AS ttft_p50_ms,
        any_value(p95) FILTER (WHERE metric = 'ttft_ms') AS ttft_p95_ms,
        any_value(p99) FILTER (WHERE metric = 'ttft_ms') AS ttft_p99_ms,
        any_value(p50) FILTER (WHERE metric = 'tokens_per_s') AS tokens_per_s_p50
    FROM percentiles
    GROUP BY ALL
)
SELECT
    t.provider, t.model,
    t.requests,
    coalesce(t.errors, 0) AS errors,
    coalesce(t.cancelled, 0) AS cancelled,
    round(coalesce(t.errors, 0) / t.requests, 4) AS error_rate,
    round(p.latency_p50_ms, 1) AS latency_p50_ms,
    round(p.latency_p95_ms, 1) AS latency_p95_ms,
    round(p.latency_p99_ms, 1) AS latency_p99_ms,
    round(p.ttft_p50_ms, 1) AS ttft_p50_ms,
    round(p.ttft_p95_ms, 1) AS ttft_p95_ms,
    round(p.ttft_p99_ms, 1) AS ttft_p99_ms,
    round(t.latency_avg_ms, 1) AS latency_avg_ms,
    t.prompt_tokens,
    t.completion_tokens,
    round(p.tokens_per_s_p50, 1) AS tokens_per_s_p50,
    round(t.gen_tokens_per_s, 1) AS gen_tokens_per_s,
    t.cost_usd
FROM totals AS t
LEFT JOIN pivoted AS p
    ON p.provider IS NOT DISTINCT FROM t.provider AND p.model IS NOT DISTINCT FROM t.model;
