-- Opportunity sync: one row per Salesforce opportunity that has (or had) a GitLab issue.
-- The primary key makes "one issue per opportunity" a database rule, not just a code path.
CREATE TABLE IF NOT EXISTS opportunity_sync (
    opportunity_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    issue_iid INTEGER,
    issue_url TEXT,
    -- creating: the issue may or may not exist yet (look it up by marker before creating again)
    -- synced / flagged / failed
    status TEXT NOT NULL,
    flagged INTEGER NOT NULL DEFAULT 0,
    content_hash TEXT,
    snapshot_json TEXT,
    labels_json TEXT,
    title TEXT,
    due_date TEXT,
    last_modstamp TEXT,
    failure_reason TEXT,
    failure_count INTEGER NOT NULL DEFAULT 0,
    quarantined INTEGER NOT NULL DEFAULT 0,
    quarantine_reason TEXT,
    last_run_id TEXT,
    updated_at TEXT NOT NULL,
    UNIQUE (project, issue_iid)
);
