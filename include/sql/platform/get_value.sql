SELECT value FROM job_values WHERE job = :job AND name = :name
