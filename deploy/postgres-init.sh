#!/usr/bin/env bash
# First start of the postgres service: Airflow's metadata database (owned by POSTGRES_USER) plus
# the product's state database (role ps) and a role for the CSAT response service (csat), whose
# grants are limited to the csat_* tables by airflow-init. Passwords come from the environment.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v ps_password="$PS_STATE_DB_PASSWORD" -v csat_password="$PS_CSAT_DB_PASSWORD" <<'SQL'
CREATE ROLE ps LOGIN PASSWORD :'ps_password';
CREATE ROLE csat LOGIN PASSWORD :'csat_password';
CREATE DATABASE ps_state OWNER ps;
REVOKE ALL ON DATABASE ps_state FROM PUBLIC;
GRANT CONNECT ON DATABASE ps_state TO csat;
SQL
