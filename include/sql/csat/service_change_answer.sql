UPDATE csat_responses
SET score = :score, comment = :comment, updated_at = :now, version = version + 1
WHERE survey_id = :survey_id AND version = :version
