SELECT DISTINCT opportunity_id
FROM opportunity_sync_reads
WHERE modstamp >= :window_start AND modstamp < :window_end
ORDER BY opportunity_id
