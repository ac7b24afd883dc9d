INSERT INTO csat_responses (survey_id, score, comment, responded_at, updated_at, version)
VALUES (:survey_id, :score, :comment, :now, :now, 1)
ON CONFLICT (survey_id) DO NOTHING
