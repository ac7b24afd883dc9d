SELECT email FROM csat_optouts
