"""ps-integrations: hooks, domain logic and stores behind the PS integration DAGs."""
