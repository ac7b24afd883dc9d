SELECT * FROM csat_surveys WHERE status = :status ORDER BY window_at, survey_id
