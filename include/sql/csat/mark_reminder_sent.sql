UPDATE csat_surveys SET reminder_status = 'sent', reminder_sent_at = :sent_at
WHERE survey_id = :survey_id AND reminder_status = 'sending'
