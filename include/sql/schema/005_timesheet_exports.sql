-- Timesheet roll-up: the files of each exported period as written, so a re-run or backfill of a
-- period with nothing new writes the same bytes (content is zlib-compressed, base64 text).
CREATE TABLE IF NOT EXISTS timesheet_export_files (
    folder TEXT NOT NULL,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    description TEXT NOT NULL,
    columns TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (folder, name)
);
