SELECT engineer, day, engagement, hours, seconds
FROM timesheet_exported
WHERE category = :category AND day < :before
ORDER BY engagement, engineer, day, timelog_id
