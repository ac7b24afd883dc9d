SELECT engineer, approval_level FROM timesheet_locks WHERE period = :period ORDER BY engineer
