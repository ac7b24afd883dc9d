SELECT name, description, columns, sha256, content FROM timesheet_export_files WHERE folder = :folder ORDER BY position
