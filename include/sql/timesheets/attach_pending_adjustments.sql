UPDATE timesheet_adjustments SET reported_in = :reported_in WHERE reported_in = ''
