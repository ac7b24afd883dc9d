-- Timesheet roll-up (issue #20): exported timelogs keep the logged seconds, unrounded; rounding
-- happens per export line (engineer, day, engagement), so hours of one timelog alone are not what
-- was billed. Rows exported before this keep seconds NULL and are read from their hours.
ALTER TABLE timesheet_exported ADD COLUMN seconds INTEGER;
