-- postgres/roles.sql - least privilege: the API's role (LOGIN, SELECT on the application
-- database's tables, also those created later by the owner) and the postgres exporter's
-- (pg_monitor, no table access). Idempotent: passwords and rights are re-applied every run.
--
-- One file for every deployment form, parameterised by the environment (psql >= 15, \getenv):
--   RESULTS_PG_DB, RESULTS_PG_OWNER (the role that runs the migrations: the seeder's),
--   RESULTS_PG_API_USER, RESULTS_PG_API_PASSWORD, RESULTS_PG_EXPORTER_USER,
--   RESULTS_PG_EXPORTER_PASSWORD.
-- The native stack (xtask/src/pg.rs) runs it on every `stack up`; docker-compose.yml and the
-- k8s local overlay mount it in /docker-entrypoint-initdb.d (first start of an empty volume).
\set ON_ERROR_STOP on
\getenv db RESULTS_PG_DB
\getenv owner RESULTS_PG_OWNER
\getenv api RESULTS_PG_API_USER
\getenv api_pw RESULTS_PG_API_PASSWORD
\getenv exporter RESULTS_PG_EXPORTER_USER
\getenv exporter_pw RESULTS_PG_EXPORTER_PASSWORD
SET password_encryption = 'scram-sha-256';
SELECT format('CREATE ROLE %I', r) FROM unnest(ARRAY[:'api', :'exporter']) AS r
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L', :'api', :'api_pw') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L', :'exporter', :'exporter_pw') \gexec
SELECT format('GRANT pg_monitor TO %I', :'exporter') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', :'db', :'api') \gexec
\connect :"db"
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'api') \gexec
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', :'api') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT SELECT ON TABLES TO %I', :'owner', :'api') \gexec
