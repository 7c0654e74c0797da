#!/usr/bin/env bash
# Run once by the postgres image's entrypoint on an empty data directory (docker-compose.yaml mounts
# this folder on /docker-entrypoint-initdb.d), as the superuser POSTGRES_USER. It creates:
#   - the Airflow metadata database AIRFLOW_DB_NAME, owned by the login role AIRFLOW_DB_USER;
#   - the results database RAGBENCH_DB_NAME, owned by the login role RAGBENCH_DB_USER, which runs
#     the migrations (sql/) and so owns every table and view;
#   - ragbench_reader, a NOLOGIN role allowed to connect to the results database only; the
#     migrations grant it SELECT on the v_* views and nothing else (sql/views/990_grants.sql);
#   - GRAFANA_DB_USER, a login role that is a member of ragbench_reader, read-only by default.
# Every name and password comes from the environment. Safe to run again: what exists is kept,
# passwords are set again.
set -euo pipefail

: "${AIRFLOW_DB_NAME:?}" "${AIRFLOW_DB_USER:?}" "${AIRFLOW_DB_PASSWORD:?}"
: "${RAGBENCH_DB_NAME:?}" "${RAGBENCH_DB_USER:?}" "${RAGBENCH_DB_PASSWORD:?}"
: "${GRAFANA_DB_USER:?}" "${GRAFANA_DB_PASSWORD:?}"

# psql variables carry the values, quoted by psql (:'v' a literal, :"v" an identifier) or by
# format(): nothing from the environment is pasted into SQL text by the shell.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v airflow_db="$AIRFLOW_DB_NAME" -v airflow_user="$AIRFLOW_DB_USER" -v airflow_pw="$AIRFLOW_DB_PASSWORD" \
    -v ragbench_db="$RAGBENCH_DB_NAME" -v ragbench_user="$RAGBENCH_DB_USER" -v ragbench_pw="$RAGBENCH_DB_PASSWORD" \
    -v grafana_user="$GRAFANA_DB_USER" -v grafana_pw="$GRAFANA_DB_PASSWORD" <<'SQL'
-- login roles (created once; the password is set on every run)
SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY[:'airflow_user', :'ragbench_user', :'grafana_user']) AS r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'airflow_user', :'airflow_pw') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'ragbench_user', :'ragbench_pw') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'grafana_user', :'grafana_pw') \gexec

-- the reader group and Grafana's membership; Grafana's sessions are read-only and bounded
SELECT 'CREATE ROLE ragbench_reader NOLOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ragbench_reader') \gexec
GRANT ragbench_reader TO :"grafana_user";
ALTER ROLE :"grafana_user" SET default_transaction_read_only = on;
ALTER ROLE :"grafana_user" SET statement_timeout = '30s';

-- the two databases, each owned by its login role and closed to everyone else
SELECT format('CREATE DATABASE %I OWNER %I', :'airflow_db', :'airflow_user')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'airflow_db') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'ragbench_db', :'ragbench_user')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'ragbench_db') \gexec
REVOKE ALL ON DATABASE :"airflow_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"ragbench_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"ragbench_db" TO ragbench_reader;

-- in the results database: the reader may look up objects in public, never create any
\connect :"ragbench_db"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO ragbench_reader;
SQL
