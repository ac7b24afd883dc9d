UPDATE csat_surveys SET status = 'sending' WHERE survey_id = :survey_id AND status = 'pending'
