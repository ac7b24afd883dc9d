INSERT INTO timesheet_adjustments (
    period, timelog_id, engineer, change, original_hours, new_hours, original_day, new_day, detected_at, reported_in
) VALUES (
    :period, :timelog_id, :engineer, :change, :original_hours, :new_hours, :original_day, :new_day, :detected_at, :reported_in
)
ON CONFLICT (period, timelog_id, change, new_hours, new_day) DO NOTHING
