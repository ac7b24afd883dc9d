DELETE FROM timesheet_export_files WHERE folder = :folder
