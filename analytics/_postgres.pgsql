-- PostgreSQL set-up for the named queries (WLM_TELEMETRY_URL): what analytics/_views.sql
-- and analytics/_summary.sql are to DuckDB. wlm runs it each time it opens the
-- database (under its schema lock), so it is safe to run again. The named queries
-- (analytics/<name>.sql) are written once and run on both engines: what they need that
-- one engine lacks is defined here or there under the same name.
-- Times are UTC TIMESTAMPs: compare with (now() AT TIME ZONE 'UTC').

DROP VIEW IF EXISTS request_facts, request_log, attempts CASCADE;
DROP FUNCTION IF EXISTS getvariable(TEXT), wlm_summary(DOUBLE PRECISION, BOOLEAN),
    wlm_bucket_start(DOUBLE PRECISION, TIMESTAMP), wlm_request_detail(TEXT),
    wlm_outcome(TEXT, INTEGER) CASCADE;

-- DuckDB's getvariable: wlm sets wlm.<name> per query (set_config(..., true)); in psql
-- SET wlm.hours = '168'; before running a file. Text, cast where used; NULL when unset.
CREATE FUNCTION getvariable(name TEXT) RETURNS TEXT
LANGUAGE sql STABLE PARALLEL SAFE
RETURN nullif(current_setting('wlm.' || name, true), '');

-- round(DOUBLE, digits), as DuckDB has it (PostgreSQL rounds only NUMERIC to digits).
CREATE OR REPLACE FUNCTION round(x DOUBLE PRECISION, digits INTEGER) RETURNS DOUBLE PRECISION
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN round(x::NUMERIC, digits)::DOUBLE PRECISION;

-- The start of the `minutes`-long bucket holding ts: DuckDB's time_bucket, whose
-- buckets start at 2000-01-03 00:00 (a Monday).
CREATE FUNCTION wlm_bucket_start(minutes DOUBLE PRECISION, ts TIMESTAMP) RETURNS TIMESTAMP
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_bin(INTERVAL '1 minute' * CAST(minutes AS BIGINT), ts, TIMESTAMP '2000-01-03');

-- How a request ended, as the client saw it (analytics/_views.sql says how).
CREATE FUNCTION wlm_outcome(status TEXT, http_status INTEGER) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN status = 'ok' THEN 'ok'
    WHEN status = 'cancelled' THEN '499'
    WHEN http_status IS NULL THEN 'error'
    WHEN http_status < 400 THEN 'error after ' || CAST(http_status AS VARCHAR)
    ELSE CAST(http_status AS VARCHAR)
END;

-- One row per request, with the derived figures the pages show.
CREATE VIEW request_facts AS
SELECT
    r.*,
    r.status = 'error' AS is_error,
    wlm_tokens_per_s(r.tokens_per_s, r.completion_tokens, r.latency_ms, r.ttft_ms)
        AS gen_tokens_per_s
FROM requests AS r;

-- A request with its conversation (no conversation when content logging was off).
CREATE VIEW request_log AS
SELECT
    r.*,
    c.request_json,
    c.response_text,
    c.reasoning_text,
    c.tool_calls_json
FROM requests AS r
LEFT JOIN conversations AS c ON c.request_id = r.id;

-- One row per upstream try (analytics/_views.sql says why).
CREATE VIEW attempts AS
SELECT request_id, number, provider, upstream_model, started_at, latency_ms,
       http_status, error_type, moved_on
FROM attempt_rows
UNION ALL
SELECT r.id AS request_id, 1 AS number, r.provider, r.upstream_model, r.started_at,
       r.latency_ms, r.http_status, r.error_type, NULL AS moved_on
FROM requests AS r
WHERE r.upstream_endpoint IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM attempt_rows AS a WHERE a.request_id = r.id);

-- One request, every column, with its conversation (the primary key finds it).
CREATE FUNCTION wlm_request_detail(rid TEXT) RETURNS SETOF request_log
LANGUAGE sql STABLE
AS $$ SELECT * FROM request_log WHERE id = rid $$;

-- wlm_summary(hours, per_model): analytics/_summary.sql has what it returns.
CREATE FUNCTION wlm_summary(hours DOUBLE PRECISION, per_model BOOLEAN)
RETURNS TABLE (
    provider VARCHAR, model VARCHAR, requests BIGINT, errors BIGINT, cancelled BIGINT,
    error_rate DOUBLE PRECISION,
    latency_p50_ms DOUBLE PRECISION, latency_p95_ms DOUBLE PRECISION,
    latency_p99_ms DOUBLE PRECISION,
    ttft_p50_ms DOUBLE PRECISION, ttft_p95_ms DOUBLE PRECISION, ttft_p99_ms DOUBLE PRECISION,
    latency_avg_ms DOUBLE PRECISION, prompt_tokens BIGINT, completion_tokens BIGINT,
    tokens_per_s_p50 DOUBLE PRECISION, gen_tokens_per_s DOUBLE PRECISION,
    cost_usd DOUBLE PRECISION
)
LANGUAGE sql STABLE
AS $$
WITH totals AS (
    SELECT
        h.provider,
        CASE WHEN per_model THEN h.model END AS model,
        sum(h.requests) AS requests,
        sum(h.requests) FILTER (WHERE h.status = 'error') AS errors,
        sum(h.requests) FILTER (WHERE h.status = 'cancelled') AS cancelled,
        sum(h.prompt_tokens) AS prompt_tokens,
        sum(h.completion_tokens) AS completion_tokens,
        sum(h.cost_usd) AS cost_usd,
        sum(h.latency_ms_sum) / nullif(sum(h.latency_n), 0) AS latency_avg_ms,
        sum(h.gen_tokens) * 1000.0::DOUBLE PRECISION / nullif(sum(h.gen_ms), 0)
            AS gen_tokens_per_s
    FROM requests_hourly AS h
    WHERE h.hour >= wlm_window_start(hours)
    GROUP BY 1, 2
),
histogram AS (
    SELECT
        l.provider,
        CASE WHEN per_model THEN l.model END AS model,
        l.metric,
        l.bucket,
        sum(l.n) AS n
    FROM latency_hourly AS l
    WHERE l.hour >= wlm_window_start(hours)
    GROUP BY 1, 2, 3, 4
),
cumulative AS (
    SELECT
        g.*,
        sum(g.n) OVER (PARTITION BY g.provider, g.model, g.metric ORDER BY g.bucket) AS below,
        sum(g.n) OVER (PARTITION BY g.provider, g.model, g.metric) AS total
    FROM histogram AS g
),
percentiles AS (
    SELECT
        c.provider, c.model, c.metric,
        wlm_bucket_value(min(c.bucket) FILTER (WHERE c.below >= 0.50 * c.total)) AS p50,
        wlm_bucket_value(min(c.bucket) FILTER (WHERE c.below >= 0.95 * c.total)) AS p95,
        wlm_bucket_value(min(c.bucket) FILTER (WHERE c.below >= 0.99 * c.total)) AS p99
    FROM cumulative AS c
    GROUP BY 1, 2, 3
),
pivoted AS (
    SELECT
        q.provider, q.model,
        max(q.p50) FILTER (WHERE q.metric = 'latency_ms') AS latency_p50_ms,
        max(q.p95) FILTER (WHERE q.metric = 'latency_ms') AS latency_p95_ms,
        max(q.p99) FILTER (WHERE q.metric = 'latency_ms') AS latency_p99_ms,
        max(q.p50) FILTER (WHERE q.metric = 'ttft_ms') AS ttft_p50_ms,
        max(q.p95) FILTER (WHERE q.metric = 'ttft_ms') AS ttft_p95_ms,
        max(q.p99) FILTER (WHERE q.metric = 'ttft_ms') AS ttft_p99_ms,
        max(q.p50) FILTER (WHERE q.metric = 'tokens_per_s') AS tokens_per_s_p50
    FROM percentiles AS q
    GROUP BY 1, 2
)
SELECT
    t.provider, t.model,
    t.requests::BIGINT,
    coalesce(t.errors, 0)::BIGINT AS errors,
    coalesce(t.cancelled, 0)::BIGINT AS cancelled,
    round(coalesce(t.errors, 0)::DOUBLE PRECISION / t.requests::DOUBLE PRECISION, 4),
    round(p.latency_p50_ms, 1),
    round(p.latency_p95_ms, 1),
    round(p.latency_p99_ms, 1),
    round(p.ttft_p50_ms, 1),
    round(p.ttft_p95_ms, 1),
    round(p.ttft_p99_ms, 1),
    round(t.latency_avg_ms, 1),
    t.prompt_tokens::BIGINT,
    t.completion_tokens::BIGINT,
    round(p.tokens_per_s_p50, 1),
    round(t.gen_tokens_per_s, 1),
    t.cost_usd
FROM totals AS t
LEFT JOIN pivoted AS p
    ON p.provider IS NOT DISTINCT FROM t.provider AND p.model IS NOT DISTINCT FROM t.model
$$;
