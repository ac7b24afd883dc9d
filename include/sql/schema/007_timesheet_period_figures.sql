-- Timesheet roll-up: GitLab's timelog count and total for each locked period when it was last
-- checked, so an edit to a period older than the look-back window is still found: a period whose
-- figures moved is read again in full and its changes become adjustments.
CREATE TABLE IF NOT EXISTS timesheet_period_figures (
    period TEXT NOT NULL PRIMARY KEY,
    timelog_count BIGINT NOT NULL,
    total_seconds BIGINT NOT NULL,
    checked_at TEXT NOT NULL
);
