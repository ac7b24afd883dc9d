-- CSAT surveys (issue #9). One row per (engagement, contact), ever. The response service reads and
-- writes only csat_* tables; in production give it a database role limited to them.
CREATE TABLE IF NOT EXISTS csat_surveys (
    survey_id TEXT PRIMARY KEY,
    engagement_url TEXT NOT NULL,
    engagement_title TEXT NOT NULL,
    issue_iid INTEGER NOT NULL,
    opportunity_id TEXT NOT NULL,
    account TEXT NOT NULL,
    engagement_type TEXT NOT NULL DEFAULT '',
    sku_category TEXT NOT NULL DEFAULT '',
    project_manager TEXT NOT NULL DEFAULT '',
    closed_at TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    contact_name TEXT NOT NULL,
    email TEXT NOT NULL,
    window_at TEXT NOT NULL,
    status TEXT NOT NULL,
    created_run_id TEXT NOT NULL,
    sent_at TEXT NOT NULL DEFAULT '',
    reminder_status TEXT NOT NULL DEFAULT '',
    reminder_sent_at TEXT NOT NULL DEFAULT '',
    UNIQUE (engagement_url, contact_id)
);

CREATE INDEX IF NOT EXISTS csat_surveys_email ON csat_surveys (email, window_at);

CREATE TABLE IF NOT EXISTS csat_responses (
    survey_id TEXT PRIMARY KEY REFERENCES csat_surveys (survey_id),
    score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    comment TEXT NOT NULL DEFAULT '',
    responded_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    followup_status TEXT NOT NULL DEFAULT '',
    followup_issue_url TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS csat_optouts (
    email TEXT PRIMARY KEY,
    opted_out_at TEXT NOT NULL,
    survey_id TEXT NOT NULL,
    source TEXT NOT NULL
);
