-- The latest requests, newest first: at most `row_limit` (default 100) from the
-- last `hours` hours (default 24), optionally only one `provider`, `model` or
-- `status` ('ok', 'error', 'cancelled'), and only before `before` (a UTC
-- timestamp: pass the last row's started_at to page back).
-- Variables: hours, row_limit, provider, model, status, before.
SELECT
    id,
    started_at,
    endpoint,
    provider,
    model,
    upstream_model,
    stream,
    status,
    http_status,
    error_type,
    round(ttft_ms, 1) AS ttft_ms,
    round(latency_ms, 1) AS latency_ms,
    prompt_tokens,
    completion_tokens,
    total_tokens,
    round(wlm_tokens_per_s(tokens_per_s, completion_tokens, latency_ms, ttft_ms), 1)
        AS tokens_per_s,
    cost_usd,
    client
FROM requests
WHERE started_at >= (now() AT TIME ZONE 'UTC') - INTERVAL '1 minute'
        * CAST(coalesce(CAST(getvariable('hours') AS DOUBLE PRECISION), 24) * 60 AS BIGINT)
    AND started_at < coalesce(CAST(getvariable('before') AS TIMESTAMP), 'infinity'::TIMESTAMP)
    AND (getvariable('provider') IS NULL OR provider = getvariable('provider'))
    AND (getvariable('model') IS NULL OR model = getvariable('model'))
    AND (getvariable('status') IS NULL OR status = getvariable('status'))
ORDER BY started_at DESC, id
LIMIT coalesce(CAST(getvariable('row_limit') AS BIGINT), 100);
