SELECT opportunity_id, kind, effect_id, payload_json, attempts, last_error, created_at, updated_at
FROM opportunity_sync_pending
ORDER BY opportunity_id, kind
