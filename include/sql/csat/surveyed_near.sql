SELECT DISTINCT email FROM csat_surveys WHERE window_at > :after AND window_at < :before
