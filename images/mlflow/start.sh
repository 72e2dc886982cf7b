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
  set -- --app-name basic-auth "$@"
fi
exec mlflow server "$@"
