SELECT name, value FROM job_values WHERE job = :job AND name LIKE :pattern ORDER BY name
