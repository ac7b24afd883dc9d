SELECT engagement, hours
FROM timesheet_exported
WHERE category = :category AND day < :before
ORDER BY engagement, timelog_id
