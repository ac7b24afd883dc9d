UPDATE csat_surveys SET status = 'sent', sent_at = :sent_at WHERE survey_id = :survey_id AND status = 'sending'
