-- Read-only: approved hours per engagement as the timesheet roll-up exported them (quarter hours,
-- exact in binary floating point, so SQLite's sum is exact too).
SELECT engagement, SUM(CAST(hours AS NUMERIC)) AS hours
FROM timesheet_exported
GROUP BY engagement
