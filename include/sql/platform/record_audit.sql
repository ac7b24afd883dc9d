INSERT INTO audit_log (dag_id, run_id, record_id, action, detail, recorded_at)
VALUES (:dag_id, :run_id, :record_id, :action, :detail, :recorded_at)
ON CONFLICT (dag_id, run_id, record_id, action) DO UPDATE SET
    detail = excluded.detail,
    recorded_at = excluded.recorded_at
