INSERT INTO opportunity_sync (
    opportunity_id, project, issue_iid, issue_url, status, flagged, content_hash, snapshot_json,
    labels_json, title, due_date, last_modstamp, failure_reason, failure_count, quarantined,
    quarantine_reason, last_run_id, updated_at
) VALUES (
    :opportunity_id, :project, :issue_iid, :issue_url, :status, :flagged, :content_hash, :snapshot_json,
    :labels_json, :title, :due_date, :last_modstamp, :failure_reason, :failure_count, :quarantined,
    :quarantine_reason, :last_run_id, :updated_at
)
ON CONFLICT (opportunity_id) DO UPDATE SET
    project = excluded.project,
    issue_iid = excluded.issue_iid,
    issue_url = excluded.issue_url,
    status = excluded.status,
    flagged = excluded.flagged,
    content_hash = excluded.content_hash,
    snapshot_json = excluded.snapshot_json,
    labels_json = excluded.labels_json,
    title = excluded.title,
    due_date = excluded.due_date,
    last_modstamp = excluded.last_modstamp,
    failure_reason = excluded.failure_reason,
    failure_count = excluded.failure_count,
    quarantined = excluded.quarantined,
    quarantine_reason = excluded.quarantine_reason,
    last_run_id = excluded.last_run_id,
    updated_at = excluded.updated_at
