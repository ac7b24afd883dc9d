SELECT s.survey_id, s.engagement_url, s.engagement_title, s.engagement_name, s.account, s.engagement_type,
       s.sku_category, s.project_manager, s.closed_at, s.window_at, s.status, r.score, r.comment, r.responded_at,
       r.updated_at, r.followup_issue_url
FROM csat_surveys s
LEFT JOIN csat_responses r ON r.survey_id = s.survey_id
WHERE s.status = 'sent'
ORDER BY s.closed_at, s.survey_id
