UPDATE csat_surveys SET reminder_status = 'sending' WHERE survey_id = :survey_id AND reminder_status = ''
