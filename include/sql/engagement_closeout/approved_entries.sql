-- Read-only: the timesheet roll-up's exported (approved, locked) timelogs of one engagement.
SELECT period, engineer, timelog_id, category, hours
FROM timesheet_exported
WHERE engagement = :engagement
ORDER BY period, engineer, timelog_id
