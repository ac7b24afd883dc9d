INSERT INTO opportunity_sync (opportunity_id, project, status, quarantined, quarantine_reason, updated_at)
VALUES (:opportunity_id, :project, 'failed', :quarantined, :quarantine_reason, :updated_at)
ON CONFLICT (opportunity_id) DO UPDATE SET
    quarantined = excluded.quarantined,
    quarantine_reason = excluded.quarantine_reason,
    updated_at = excluded.updated_at
