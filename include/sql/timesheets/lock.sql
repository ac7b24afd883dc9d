INSERT INTO timesheet_locks (period, engineer, approval_level, run_id, exported_at)
VALUES (:period, :engineer, :approval_level, :run_id, :exported_at)
ON CONFLICT (period, engineer) DO NOTHING
