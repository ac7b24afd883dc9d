SELECT s.survey_id, s.engagement_url, s.engagement_title, s.account, s.project_manager, s.closed_at,
       r.score, r.comment, r.responded_at, r.followup_status
FROM csat_responses r
JOIN csat_surveys s ON s.survey_id = r.survey_id
WHERE r.score <= 2 AND r.followup_status IN ('', 'creating')
ORDER BY r.responded_at, s.survey_id
