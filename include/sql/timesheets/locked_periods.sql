SELECT DISTINCT period FROM timesheet_locks ORDER BY period
