-- Distributions for charts: over the last `hours` whole clock hours (default
-- 24), per series (a provider, or a model when group_by = 'model') and metric
-- ('latency_ms' or 'ttft_ms'), how many successful requests took a time in
-- each bin (lower_ms, upper_ms] of a log scale. A bin is `bin_width` (default
-- 6) histogram buckets of latency_hourly wide: 1.05^6, about 1.34 times from
-- its lower to its upper bound, 8 bins per tenfold. Bins with no requests are
-- absent.
-- Variables: hours, group_by, bin_width.  Reads the hourly rollups.
WITH binned AS (
    SELECT
        CASE coalesce(CAST(getvariable('group_by') AS VARCHAR), 'provider')
            WHEN 'model' THEN model ELSE provider END AS series,
        metric,
        CAST(floor((bucket - 1)
                   / coalesce(CAST(getvariable('bin_width') AS DOUBLE PRECISION), 6)) AS INTEGER)
            AS bin,
        sum(n) AS requests
    FROM latency_hourly
    WHERE hour >= wlm_window_start(coalesce(CAST(getvariable('hours') AS INTEGER), 24))
        AND metric IN ('latency_ms', 'ttft_ms')
    GROUP BY 1, 2, 3
)
SELECT
    series,
    metric,
    bin,
    round(pow(CAST(1.05 AS DOUBLE PRECISION),
              bin * coalesce(CAST(getvariable('bin_width') AS INTEGER), 6)), 3) AS lower_ms,
    round(pow(CAST(1.05 AS DOUBLE PRECISION),
              (bin + 1) * coalesce(CAST(getvariable('bin_width') AS INTEGER), 6)), 3) AS upper_ms,
    requests
FROM binned
ORDER BY series, metric, bin;
