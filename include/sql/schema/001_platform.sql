-- Platform tables shared by every job. Runs on SQLite and PostgreSQL alike:
-- TEXT timestamps in ISO 8601 UTC, no dialect-specific types.

-- One row per DAG run: its data interval and the summary line its last task returned.
CREATE TABLE IF NOT EXISTS job_runs (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    interval_start TEXT,
    interval_end TEXT,
    summary TEXT NOT NULL,
    counts_json TEXT NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (dag_id, run_id)
);

-- What each run did to each record (created, updated, unchanged, flagged, failed, quarantined...).
-- Keyed by run and record so a retried task rewrites its rows instead of adding duplicates.
CREATE TABLE IF NOT EXISTS audit_log (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (dag_id, run_id, record_id, action)
);

CREATE INDEX IF NOT EXISTS audit_log_record ON audit_log (dag_id, record_id);
