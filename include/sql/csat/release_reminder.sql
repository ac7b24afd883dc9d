UPDATE csat_surveys SET reminder_status = '' WHERE survey_id = :survey_id AND reminder_status = 'sending'
