INSERT INTO timesheet_period_figures (period, timelog_count, total_seconds, checked_at)
VALUES (:period, :timelog_count, :total_seconds, :checked_at)
ON CONFLICT (period) DO UPDATE SET
    timelog_count = excluded.timelog_count,
    total_seconds = excluded.total_seconds,
    checked_at = excluded.checked_at
