UPDATE csat_responses SET followup_status = :status, followup_issue_url = :url WHERE survey_id = :survey_id
