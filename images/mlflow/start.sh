#!/usr/bin/env bash
# Starts the tracking server once the backend store is at this MLflow's schema (a snapshot is
# taken before any upgrade) and, with auth on, the admin's password is the one in .env. A store
# that a newer MLflow migrated keeps the container up, unhealthy, with the reason in its log (a
# restart would not help and would hide it); any other failure (a database server not up yet,
# after a reboot) exits non-zero, and Docker's restart policy tries again.
set -euo pipefail

store=/usr/local/lib/mlstack/store.py
status=0
python "$store" prepare || status=$?
if [ "$status" -eq 3 ]; then
  echo "error: the tracking server was not started (reason above); see 'make logs'" >&2
  exec sleep infinity
elif [ "$status" -ne 0 ]; then
  echo "error: the tracking server was not started (reason above); Docker starts it again" >&2
  exit "$status"
fi
# Optional authentication for a shared server (MLSTACK_MLFLOW_AUTH=true in .env)
if [ "${MLSTACK_MLFLOW_AUTH:-false}" = true ]; then
  # The team stack keeps the user store in PostgreSQL: its URI holds a password, so the auth
  # config naming it is written at start to /tmp (a tmpfs), never into the image. `mlflow
  # server` migrates it and adds the admin once, before its workers start.
  if [ -n "${MLSTACK_AUTH_DATABASE_URI:-}" ]; then
    # (by Python from the environment: a sed expression would put the password on a command line)
    (umask 077 && python -c '
import os, re, sys
text = open(os.environ["MLFLOW_AUTH_CONFIG_PATH"]).read()
uri = os.environ["MLSTACK_AUTH_DATABASE_URI"]
sys.stdout.write(re.sub(r"(?m)^database_uri = .*$", lambda _: f"database_uri = {uri}", text))
' >/tmp/basic_auth.ini)
    export MLFLOW_AUTH_CONFIG_PATH=/tmp/basic_auth.ini
    unset MLSTACK_AUTH_DATABASE_URI
  fi
  # Credentials follow .env: the admin and the stack user (whom jobs and notebooks log in as)
  # get this .env's passwords; the stack user is made on the first start
  python "$store" credentials
  set -- --app-name basic-auth "$@"
fi
# The server logs in as no one: the stack user's password was for the user store only
unset MLSTACK_TRACKING_USERNAME MLSTACK_TRACKING_PASSWORD
exec mlflow server "$@"
