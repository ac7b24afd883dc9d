INSERT INTO timesheet_exported (period, engineer, timelog_id, day, engagement, category, hours, seconds)
VALUES (:period, :engineer, :timelog_id, :day, :engagement, :category, :hours, :seconds)
ON CONFLICT (period, engineer, timelog_id) DO NOTHING
