-- Read-only: the roll-up's adjustments to locked timelogs, with the engagement the timelog was
-- exported under (an adjustment of a timelog never exported has no engagement here). Oldest first:
-- a later adjustment of the same timelog replaces an earlier one.
SELECT e.engagement, a.period, a.timelog_id, a.engineer, a.change, a.original_hours, a.new_hours, a.detected_at
FROM timesheet_adjustments a
JOIN timesheet_exported e ON e.period = a.period AND e.timelog_id = a.timelog_id
WHERE :engagement = '' OR e.engagement = :engagement
ORDER BY a.detected_at, a.period, a.timelog_id, a.new_hours
