INSERT INTO timesheet_exported (period, engineer, timelog_id, day, engagement, category, hours)
VALUES (:period, :engineer, :timelog_id, :day, :engagement, :category, :hours)
ON CONFLICT (period, engineer, timelog_id) DO NOTHING
