SELECT period, timelog_id, engineer, change FROM timesheet_adjustments WHERE reported_in = '' ORDER BY period, timelog_id
