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
