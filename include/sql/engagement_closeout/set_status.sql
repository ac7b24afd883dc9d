UPDATE engagement_closeouts SET status = :status, reason = :reason, run_id = :run_id, updated_at = :updated_at
WHERE engagement_url = :engagement_url AND closed_at = :closed_at
