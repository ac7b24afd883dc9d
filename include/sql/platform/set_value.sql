INSERT INTO job_values (job, name, value, updated_at) VALUES (:job, :name, :value, :updated_at)
ON CONFLICT (job, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
