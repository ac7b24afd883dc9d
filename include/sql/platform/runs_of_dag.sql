SELECT dag_id, run_id, interval_start, interval_end, summary, counts_json, failed, finished_at
FROM job_runs
WHERE dag_id = :dag_id
ORDER BY finished_at DESC, run_id DESC
