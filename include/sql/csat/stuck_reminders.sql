SELECT survey_id FROM csat_surveys WHERE reminder_status = 'sending' ORDER BY survey_id
