-- Engagement close-out (issue #22): one row per close of an engagement issue (its closed_at), so the
-- report is attached and the Chatter post made once per close. The status is recorded before each
-- remote write ("attaching", "posting") and after it ("attached", "posted"); an unfinished row is
-- completed by a later run, which first looks the file / post up in Salesforce by its reference tag.
CREATE TABLE IF NOT EXISTS engagement_closeouts (
    engagement_url TEXT NOT NULL,
    closed_at TEXT NOT NULL,
    issue_iid INTEGER NOT NULL,
    opportunity_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    tag TEXT NOT NULL DEFAULT '',
    export_folder TEXT NOT NULL DEFAULT '',
    content_document_id TEXT NOT NULL DEFAULT '',
    content_version_id TEXT NOT NULL DEFAULT '',
    feed_element_id TEXT NOT NULL DEFAULT '',
    margin_pct TEXT NOT NULL DEFAULT '',
    percent_complete TEXT NOT NULL DEFAULT '',
    run_id TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (engagement_url, closed_at)
);
