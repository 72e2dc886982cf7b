#!/usr/bin/env bash
# Starts the tracking server once the backend store is at this MLflow's schema (a snapshot is
# taken before any upgrade). When the store cannot be used, the container stays up, unhealthy,
# with the reason in its log, instead of a restart loop that would hide it.
set -euo pipefail

if ! python /usr/local/lib/mlstack/store.py prepare; then
  echo "error: the tracking server was not started (reason above); see 'make logs'" >&2
  exec sleep infinity
fi
# Optional authentication for a shared server (MLSTACK_MLFLOW_AUTH=true in .env)
if [ "${MLSTACK_MLFLOW_AUTH:-false}" = true ]; then
  # The team stack keeps the user store in PostgreSQL: its URI holds a password, so the auth
  # config naming it is written at start to /tmp (a tmpfs), never into the image. `mlflow
  # server` migrates it and adds the admin once, before its workers start.
  if [ -n "${MLSTACK_AUTH_DATABASE_URI:-}" ]; then
    (umask 077 && sed "s|^database_uri = .*|database_uri = $MLSTACK_AUTH_DATABASE_URI|" \
      "$MLFLOW_AUTH_CONFIG_PATH" >/tmp/basic_auth.ini)
    export MLFLOW_AUTH_CONFIG_PATH=/tmp/basic_auth.ini
    unset MLSTACK_AUTH_DATABASE_URI
  fi
  set -- --app-name basic-auth "$@"
fi
exec mlflow server "$@"
