#!/usr/bin/env bash
# Prints the host URLs of the running MLflow and Jupyter services (the ports Docker picked) and
# saves the MLflow one in .mlstack/urls.env, where train.py reads it to print run links.
set -euo pipefail
cd "$(dirname "$0")/.."

url_of() { # url_of SERVICE CONTAINER_PORT
  local address
  address="$(docker compose port "$1" "$2" 2>/dev/null)" || return 1
  [ -n "$address" ] || return 1
  echo "http://$address"
}

mlflow_url="$(url_of mlflow 5000)" || {
  echo "error: the mlflow service is not running; start the stack with 'make up'" >&2
  exit 1
}
token="$(sed -n 's/^JUPYTER_TOKEN=//p' .env)"
jupyter_url=""
if base="$(url_of jupyter 8888)"; then
  jupyter_url="$base/lab?token=$token"
fi

# No token in this file: the containers read it as whichever UID they run as
mkdir -p .mlstack
printf 'MLSTACK_MLFLOW_URL=%s\n' "$mlflow_url" >.mlstack/urls.env
echo "MLflow:  $mlflow_url"
echo "Jupyter: ${jupyter_url:-not running (make up)}"
