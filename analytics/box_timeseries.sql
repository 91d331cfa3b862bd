-- The box's resources over time (box_samples, sampled every WLM_STATS_EVERY_S s):
-- per `bucket_minutes` bucket (default 5) over exactly the last `hours` hours
-- (default 6), one row per host and device: the `cpu` row (all cores, and RAM),
-- each GPU (`gpu 0`, ...) and each local engine (its model id).
-- util_avg_percent / util_max_percent: CPU or GPU use (NULL for an engine);
-- mem_used_avg_bytes / mem_used_max_bytes: RAM in use, a GPU's memory, an engine's
-- RSS; mem_total_bytes: RAM or the GPU's memory; slots_busy_max: an engine's busiest.
-- Variables: hours, bucket_minutes.
SELECT
    wlm_bucket_start(coalesce(CAST(getvariable('bucket_minutes') AS INTEGER), 5), sampled_at)
        AS bucket,
    host,
    kind,
    CASE kind
        WHEN 'cpu' THEN 'cpu'
        WHEN 'gpu' THEN 'gpu ' || CAST(gpu_index AS VARCHAR)
        ELSE name END AS device,
    max(name) AS name,
    count(*) AS samples,
    round(avg(util_percent), 1) AS util_avg_percent,
    max(util_percent) AS util_max_percent,
    round(avg(mem_used_bytes)) AS mem_used_avg_bytes,
    max(mem_used_bytes) AS mem_used_max_bytes,
    max(mem_total_bytes) AS mem_total_bytes,
    max(slots_busy) AS slots_busy_max
FROM box_samples
WHERE sampled_at >= (now() AT TIME ZONE 'UTC') - INTERVAL '1 minute'
    * CAST(coalesce(CAST(getvariable('hours') AS DOUBLE PRECISION), 6) * 60 AS BIGINT)
GROUP BY 1, 2, 3, 4
ORDER BY bucket, host, kind, device;
