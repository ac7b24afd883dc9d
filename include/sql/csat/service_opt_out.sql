INSERT INTO csat_optouts (email, opted_out_at, survey_id, source)
SELECT email, :now, survey_id, :source FROM csat_surveys WHERE survey_id = :survey_id
ON CONFLICT (email) DO NOTHING
