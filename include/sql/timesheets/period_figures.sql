SELECT period, timelog_count, total_seconds FROM timesheet_period_figures
