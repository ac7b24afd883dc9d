UPDATE opportunity_sync_pending
SET attempts = attempts + 1, last_error = :last_error, updated_at = :updated_at
WHERE opportunity_id = :opportunity_id AND kind = :kind
