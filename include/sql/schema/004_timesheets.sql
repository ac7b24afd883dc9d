-- Timesheet roll-up: what each exported (period, engineer) contained, so a later change to a
-- timelog of a locked period becomes an adjustment instead of a silent re-export.
CREATE TABLE IF NOT EXISTS timesheet_locks (
    period TEXT NOT NULL,
    engineer TEXT NOT NULL,
    approval_level INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    exported_at TEXT NOT NULL,
    PRIMARY KEY (period, engineer)
);

CREATE TABLE IF NOT EXISTS timesheet_exported (
    period TEXT NOT NULL,
    engineer TEXT NOT NULL,
    timelog_id TEXT NOT NULL,
    day TEXT NOT NULL,
    engagement TEXT NOT NULL,
    category TEXT NOT NULL,
    hours TEXT NOT NULL,
    PRIMARY KEY (period, engineer, timelog_id)
);

CREATE TABLE IF NOT EXISTS timesheet_adjustments (
    period TEXT NOT NULL,
    timelog_id TEXT NOT NULL,
    engineer TEXT NOT NULL,
    change TEXT NOT NULL,
    original_hours TEXT NOT NULL DEFAULT '',
    new_hours TEXT NOT NULL DEFAULT '',
    original_day TEXT NOT NULL DEFAULT '',
    new_day TEXT NOT NULL DEFAULT '',
    detected_at TEXT NOT NULL,
    reported_in TEXT NOT NULL,
    PRIMARY KEY (period, timelog_id, change, new_hours, new_day)
);
