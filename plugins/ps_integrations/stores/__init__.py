"""One repository per job over the state database (SQL in ``include/sql/``); typed records in and out."""
