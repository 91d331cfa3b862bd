-- Requests and errors in exactly the last 60 minutes: one row per provider,
-- then a total row (scope = 'total', provider NULL; present, with 0 requests and a
-- NULL error_rate, even when nothing happened).
-- Variables: none.
SELECT
    CASE WHEN grouping(provider) = 1 THEN 'total' ELSE 'provider' END AS scope,
    provider,
    count(*) AS requests,
    count(*) FILTER (WHERE status = 'error') AS errors,
    count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
    round(CAST(count(*) FILTER (WHERE status = 'error') AS DOUBLE PRECISION)
          / nullif(count(*), 0), 4) AS error_rate,
    round(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE status = 'ok'),
          1) AS latency_p95_ms,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens
FROM requests
WHERE started_at >= (now() AT TIME ZONE 'UTC') - INTERVAL '60 minutes'
GROUP BY ROLLUP (provider)
ORDER BY grouping(provider), requests DESC, provider;
