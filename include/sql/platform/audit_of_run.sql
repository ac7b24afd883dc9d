SELECT dag_id, run_id, record_id, action, detail, recorded_at
FROM audit_log
WHERE dag_id = :dag_id AND run_id = :run_id
ORDER BY record_id, action
