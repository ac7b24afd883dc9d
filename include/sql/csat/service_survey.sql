SELECT s.survey_id, s.engagement_title, s.engagement_name, s.company, s.account, s.status,
       r.score, r.comment, r.version
FROM csat_surveys s
LEFT JOIN csat_responses r ON r.survey_id = s.survey_id
WHERE s.survey_id = :survey_id
