INSERT INTO job_runs (dag_id, run_id, interval_start, interval_end, summary, counts_json, failed, finished_at)
VALUES (:dag_id, :run_id, :interval_start, :interval_end, :summary, :counts_json, :failed, :finished_at)
ON CONFLICT (dag_id, run_id) DO UPDATE SET
    interval_start = excluded.interval_start,
    interval_end = excluded.interval_end,
    summary = excluded.summary,
    counts_json = excluded.counts_json,
    failed = excluded.failed,
    finished_at = excluded.finished_at
