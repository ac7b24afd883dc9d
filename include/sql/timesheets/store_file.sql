INSERT INTO timesheet_export_files (folder, name, position, description, columns, sha256, content)
VALUES (:folder, :name, :position, :description, :columns, :sha256, :content)
