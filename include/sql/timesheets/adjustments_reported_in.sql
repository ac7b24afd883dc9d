SELECT period, timelog_id, engineer, change, original_hours, new_hours, original_day, new_day, detected_at, reported_in
FROM timesheet_adjustments
WHERE reported_in = :reported_in
ORDER BY period, engineer, timelog_id, change
