SELECT period, engineer, timelog_id, day, engagement, category, hours, seconds
FROM timesheet_exported
WHERE period = :period
ORDER BY engineer, timelog_id
