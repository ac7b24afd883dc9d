SELECT contact_id FROM csat_surveys WHERE engagement_url = :engagement_url
