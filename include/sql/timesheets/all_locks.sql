SELECT period, engineer, approval_level FROM timesheet_locks ORDER BY period, engineer
