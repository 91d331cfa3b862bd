-- One request, every column, with its conversation (NULL text when content
-- logging was off): wlm_request_detail, which finds it fast on either engine
-- (analytics/_views.sql, analytics/_postgres.pgsql).
-- Variables: request_id (required).
SELECT * FROM wlm_request_detail(CAST(getvariable('request_id') AS VARCHAR));
