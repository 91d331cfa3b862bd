-- One request, every column, with its conversation (NULL text when content
-- logging was off). The *_key columns (a 64-bit digest of the id) make the
-- lookup a fast scan; the id comparison makes it exact.
-- Variables: request_id (required).
SELECT
    r.* EXCLUDE (id_key),
    c.request_json,
    c.response_text,
    c.reasoning_text,
    c.tool_calls_json
FROM requests AS r
LEFT JOIN (
    SELECT * FROM conversations
    WHERE request_key = md5_number_lower(getvariable('request_id'))
        AND request_id = getvariable('request_id')
) AS c ON true
WHERE r.id_key = md5_number_lower(getvariable('request_id'))
    AND r.id = getvariable('request_id');
