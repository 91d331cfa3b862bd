-- Views for people writing their own SQL (wlm sql, the duckdb CLI). wlm
-- (re)creates them each time it opens the file, so a copy has them too.
-- Times are UTC TIMESTAMPs: compare with (now() AT TIME ZONE 'UTC').

-- One row per request, with the derived figures the pages show.
CREATE OR REPLACE VIEW request_facts AS
SELECT
    r.* EXCLUDE (id_key),
    r.status = 'error' AS is_error,
    wlm_tokens_per_s(r.tokens_per_s, r.completion_tokens, r.latency_ms, r.ttft_ms)
        AS gen_tokens_per_s
FROM requests AS r;

-- A request with its conversation (no conversation when content logging was off).
CREATE OR REPLACE VIEW request_log AS
SELECT
    r.* EXCLUDE (id_key),
    c.request_json,
    c.response_text,
    c.reasoning_text,
    c.tool_calls_json
FROM requests AS r
LEFT JOIN conversations AS c ON c.request_id = r.id;

-- One row per upstream try. A request that took several tries (retries, fallbacks,
-- cooldown skips, spillover) keeps each in attempt_rows; every other request had one
-- try, read from its own row (stored once, so the common case costs one row).
CREATE OR REPLACE VIEW attempts AS
SELECT request_id, number, provider, upstream_model, started_at, latency_ms,
       http_status, error_type, moved_on
FROM attempt_rows
UNION ALL
SELECT r.id AS request_id, 1 AS number, r.provider, r.upstream_model, r.started_at,
       r.latency_ms, r.http_status, r.error_type, NULL AS moved_on
FROM requests AS r
WHERE r.upstream_endpoint IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM attempt_rows AS a WHERE a.request_key = r.id_key AND a.request_id = r.id
  );

-- Helpers the named queries share with PostgreSQL (analytics/_postgres.pgsql defines
-- them there), so each query is written once.
-- The start of the `minutes`-long bucket holding ts.
CREATE OR REPLACE MACRO wlm_bucket_start(minutes, ts) AS
    time_bucket(to_minutes(CAST(minutes AS BIGINT)), ts);

-- How a request ended, as the client saw it: 'ok', the HTTP status of a failure
-- ('429', '502', ...), '499' for a client that left (whatever was stored: older rows
-- kept the 200 of a stream the client left), 'error after 200' for a stream that
-- failed once started, 'error' without a status on record (outcomes_*.sql).
CREATE OR REPLACE MACRO wlm_outcome(status, http_status) AS
    CASE
        WHEN status = 'ok' THEN 'ok'
        WHEN status = 'cancelled' THEN '499'
        WHEN http_status IS NULL THEN 'error'
        WHEN http_status < 400 THEN 'error after ' || CAST(http_status AS VARCHAR)
        ELSE CAST(http_status AS VARCHAR)
    END;

-- One request, every column, with its conversation (NULL text when content logging was
-- off). The *_key columns (a 64-bit digest of the id) make the lookup a fast scan; the
-- id comparison makes it exact.
CREATE OR REPLACE MACRO wlm_request_detail(rid) AS TABLE
SELECT
    r.* EXCLUDE (id_key),
    c.request_json,
    c.response_text,
    c.reasoning_text,
    c.tool_calls_json
FROM requests AS r
LEFT JOIN (
    SELECT * FROM conversations
    WHERE request_key = md5_number_lower(rid) AND request_id = rid
) AS c ON true
WHERE r.id_key = md5_number_lower(rid) AND r.id = rid;
