-- Per client endpoint over the last `hours` whole clock hours (default 24): what
-- wlm called upstream for it, and whether that was the client's own dialect
-- (`native`: passed through) or Chat Completions (`translated`); `none` when no
-- upstream was called (a refused request, a count_tokens estimate).  Requests,
-- errors, median latency of successful requests (ms), tokens in and out.
-- Variables: hours.  Reads the requests table (endpoints are not in the rollups).
SELECT
    endpoint,
    upstream_endpoint,
    CASE
        WHEN upstream_endpoint IS NULL THEN 'none'
        WHEN upstream_endpoint = endpoint THEN 'native'
        ELSE 'translated'
    END AS path,
    count(*) AS requests,
    count(*) FILTER (WHERE status = 'error') AS errors,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE status = 'ok')
        AS latency_p50_ms,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens
FROM requests
WHERE started_at >= wlm_window_start(coalesce(CAST(getvariable('hours') AS INTEGER), 24))
GROUP BY 1, 2, 3
ORDER BY requests DESC, endpoint, path;
