#!/usr/bin/env bash
# Prints the host URLs of the running MLflow and Jupyter services and of the Dask dashboard when
# `make up WORKERS=N` started a cluster (the ports Docker picked). Saves the MLflow and dashboard
# ones in .mlstack/urls.env, where jobs read them (run links; whether a cluster is expected), and
# the dashboard's in .mlstack/dask.yaml, Dask's configuration in the containers (DASK_CONFIG):
# the link a client shows is then the host's URL.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

url_of() { # url_of SERVICE CONTAINER_PORT
  local address
  address="$(docker compose --profile dask port "$1" "$2" 2>/dev/null)" || return 1
  [ -n "$address" ] || return 1
  echo "http://$address"
}

mlflow_url="$(url_of mlflow 5000)" || {
  echo "error: the mlflow service is not running; start the stack with 'make up'" >&2
  exit 1
}
token="$(env_setting JUPYTER_TOKEN)"
jupyter_url=""
if base="$(url_of jupyter 8888)"; then
  jupyter_url="$base/lab?token=$token"
fi

dask_url="$(url_of dask-scheduler 8787 || true)"

# No token in these files: the containers read them as whichever UID they run as
mkdir -p .mlstack
printf 'MLSTACK_MLFLOW_URL=%s\n' "$mlflow_url" >.mlstack/urls.env
rm -f .mlstack/dask.yaml
if [ -n "$dask_url" ]; then
  printf 'MLSTACK_DASK_DASHBOARD_URL=%s\n' "$dask_url" >>.mlstack/urls.env
  printf 'distributed:\n  dashboard:\n    link: "%s/status"\n' "$dask_url" >.mlstack/dask.yaml
fi
echo "MLflow:  $mlflow_url"
echo "Jupyter: ${jupyter_url:-not running (make up)}"
if [ -n "$dask_url" ]; then
  workers="$(docker compose --profile dask ps --quiet --status running dask-worker | wc -l)"
  echo "Dask:    $dask_url/status ($workers workers; Client() connects in Jupyter and the runner)"
fi
