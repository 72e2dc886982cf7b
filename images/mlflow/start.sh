#!/usr/bin/env bash
# Starts the tracking server, first migrating an existing backend store to this MLflow's schema
# (a new store is created by the server itself).
set -euo pipefail

db="${MLFLOW_BACKEND_STORE_URI#sqlite:///}"
if [[ "$MLFLOW_BACKEND_STORE_URI" == sqlite:///* && -s "$db" ]]; then
  mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"
fi
exec mlflow server "$@"
