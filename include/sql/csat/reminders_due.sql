SELECT s.*
FROM csat_surveys s
LEFT JOIN csat_responses r ON r.survey_id = s.survey_id
LEFT JOIN csat_optouts o ON o.email = s.email
WHERE s.status = 'sent' AND s.reminder_status = '' AND r.survey_id IS NULL AND o.email IS NULL
  AND s.window_at <= :due_before
ORDER BY s.window_at, s.survey_id
