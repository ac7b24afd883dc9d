UPDATE csat_surveys SET status = 'pending' WHERE survey_id = :survey_id AND status = 'sending'
