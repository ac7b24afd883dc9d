DELETE FROM opportunity_sync_pending
WHERE opportunity_id = :opportunity_id AND kind = :kind AND effect_id = :effect_id
