-- Opportunity sync (issue #17): remote writes the sync owes, and what each window read.
-- A pending effect is recorded before (note) or together with (write-back) the state it belongs
-- to, and removed once done: a crash or a failed call leaves it for the next run.
CREATE TABLE IF NOT EXISTS opportunity_sync_pending (
    opportunity_id TEXT NOT NULL,
    -- note: a note about to be posted (its change id is hidden in the body);
    -- writeback: the issue URL to write to the opportunity's writeback field
    kind TEXT NOT NULL,
    effect_id TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (opportunity_id, kind)
);

-- Every SystemModstamp a window read, so a re-run of that window re-reads the same opportunities
-- even after our own write-back moved their stamp (UTC, fixed-width ISO text: compares as time).
CREATE TABLE IF NOT EXISTS opportunity_sync_reads (
    opportunity_id TEXT NOT NULL,
    modstamp TEXT NOT NULL,
    PRIMARY KEY (opportunity_id, modstamp)
);
