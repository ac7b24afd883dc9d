INSERT INTO opportunity_sync_pending (
    opportunity_id, kind, effect_id, payload_json, attempts, last_error, created_at, updated_at
) VALUES (
    :opportunity_id, :kind, :effect_id, :payload_json, 0, NULL, :updated_at, :updated_at
)
ON CONFLICT (opportunity_id, kind) DO UPDATE SET
    effect_id = excluded.effect_id,
    payload_json = excluded.payload_json,
    updated_at = excluded.updated_at
