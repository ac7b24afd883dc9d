SELECT opportunity_id, project, issue_iid, issue_url, status, flagged, content_hash, snapshot_json,
       labels_json, title, due_date, last_modstamp, failure_reason, failure_count, quarantined,
       quarantine_reason, last_run_id, updated_at
FROM opportunity_sync
