INSERT INTO csat_responses (survey_id, score, comment, responded_at, updated_at)
VALUES (:survey_id, :score, :comment, :now, :now)
ON CONFLICT (survey_id) DO UPDATE SET score = excluded.score, comment = excluded.comment, updated_at = excluded.updated_at
