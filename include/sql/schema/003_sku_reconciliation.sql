-- SKU reconciliation: the problems found per as_of date, to report drift between runs.
CREATE TABLE IF NOT EXISTS sku_reconciliation_runs (
    as_of TEXT PRIMARY KEY,
    services_yml_ref TEXT,
    services_yml_blob_id TEXT,
    counts_json TEXT NOT NULL,
    export_folder TEXT NOT NULL,
    run_id TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS sku_reconciliation_problems (
    as_of TEXT NOT NULL,
    item TEXT NOT NULL,
    currency TEXT NOT NULL,
    problem TEXT NOT NULL,
    PRIMARY KEY (as_of, item, currency, problem)
);

-- Small named values jobs keep between runs (the finance issue's iid, what was mailed).
CREATE TABLE IF NOT EXISTS job_values (
    job TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (job, name)
);
