#!/usr/bin/env bash
# Starts PostgreSQL on PGDATA. On the first start (no data directory yet) it initialises one
# beside PGDATA with the tracking server's role `mlflow` (password: POSTGRES_PASSWORD from the
# environment) and its databases `mlflow` (backend store) and `mlflow_auth` (basic-auth users),
# then renames it into place: a start cut short leaves no half-made data directory behind. On
# every later start the role's password is set again from POSTGRES_PASSWORD, in PostgreSQL's
# single-user mode (no connection can be made meanwhile), so a regenerated .env reaches the data.
# With MLSTACK_SCHEDULER_DB_PASSWORD set (the scheduled jobs in team mode), the scheduling engine's
# role `scheduler` is made or given that password the same way; it may create its own database.
set -euo pipefail

if [ -z "${POSTGRES_PASSWORD:-}" ]; then
  echo "error: POSTGRES_PASSWORD is not set; run 'make .env' (it generates one) and start again" >&2
  exit 2
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  staging="$PGDATA.init"
  rm -rf "$staging"
  # Local connections (docker compose exec, as postgres) by OS user; over TCP a password
  initdb --pgdata="$staging" --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  # Clients on the compose network (the tracking server) log in with the role's password
  echo "host all all all scram-sha-256" >>"$staging/pg_hba.conf"
  # The socket on the tmpfs /tmp (PGHOST): the root file system is read-only, and Docker mounts
  # a tmpfs at /var/run/postgresql root-owned
  echo "unix_socket_directories = '$PGHOST'" >>"$staging/postgresql.conf"
  # No TCP while the role is made: nothing can connect before it has its password
  pg_ctl --pgdata="$staging" --options="-c listen_addresses=''" --wait --silent start
  # The password from the environment (\getenv), never on psql's command line
  psql --quiet --no-psqlrc --set=ON_ERROR_STOP=1 --username=postgres --dbname=postgres <<'SQL'
\getenv password POSTGRES_PASSWORD
CREATE ROLE mlflow LOGIN PASSWORD :'password';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
SQL
  pg_ctl --pgdata="$staging" --mode=fast --wait --silent stop
  mv "$staging" "$PGDATA"
  echo "postgres: initialised $PGDATA (role mlflow, databases mlflow and mlflow_auth)"
else
  # Through stdin, not a command line; quotes doubled as SQL wants
  printf "ALTER ROLE mlflow PASSWORD '%s'\n" "${POSTGRES_PASSWORD//\'/\'\'}" |
    postgres --single -D "$PGDATA" postgres >/dev/null
fi
if [ -n "${MLSTACK_SCHEDULER_DB_PASSWORD:-}" ]; then
  # One line: single-user mode runs each line as a statement
  printf "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'scheduler') THEN CREATE ROLE scheduler LOGIN CREATEDB; END IF; END\$\$;\nALTER ROLE scheduler PASSWORD '%s'\n" \
    "${MLSTACK_SCHEDULER_DB_PASSWORD//\'/\'\'}" | postgres --single -D "$PGDATA" postgres >/dev/null
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
