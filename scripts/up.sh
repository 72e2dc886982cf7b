#!/usr/bin/env bash
# Starts mlflow and jupyter (images built first, by make), waits until both are healthy and
# prints their URLs; if one is not healthy in time, says which and shows its logs.
# Usage: scripts/up.sh [WORKERS]   WORKERS >= 1: also a Dask scheduler and that many workers
# (rescaled when they run); none or 0: the project's Dask containers are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

workers="${1:-0}"
if ! [[ "$workers" =~ ^[0-9]+$ ]]; then
  echo "error: WORKERS=$workers is not a number of Dask workers; use make up WORKERS=2, or make up for none" >&2
  exit 2
fi
workers=$((10#$workers))

services=(mlflow jupyter)
options=()
if [ "$workers" -gt 0 ]; then
  services+=(dask-scheduler dask-worker)
  options=(--scale "dask-worker=$workers")
else
  # No cluster: nothing of it left to cost memory (its spill volume stays)
  docker compose --profile dask rm --stop --force dask-scheduler dask-worker >/dev/null 2>&1 || true
fi
# How long to wait for health: 3 minutes, or 15 in team mode, whose first start migrates a new
# PostgreSQL database (over 3 minutes on a busy 2-core machine; compose.team.yaml's start period)
wait_seconds=180
compose_files="${COMPOSE_FILE:-$(env_setting COMPOSE_FILE)}"
[[ ":$compose_files:" != *":compose.team.yaml:"* ]] || wait_seconds=900
wait_seconds="${MLSTACK_UP_TIMEOUT:-$wait_seconds}"
# The host ports this project keeps (in .env) from one start to the next
scripts/ports.sh

# --remove-orphans: after a switch of mode (make up TEAM=0) the other mode's services go; their
# volumes stay
if docker compose --profile dask up --detach --wait --wait-timeout "$wait_seconds" \
  --remove-orphans "${options[@]}" "${services[@]}"; then
  scripts/urls.sh
  exit 0
fi
for service in "${services[@]}"; do
  for id in $(docker compose --profile dask ps --all --quiet "$service"); do
    state="$(docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null || echo "not created")"
    if [ "$state" != "running healthy" ]; then
      echo "---- last logs of $service ----" >&2
      docker compose --profile dask logs --no-color --tail 40 "$service" >&2 || true
      echo "error: service $service is not healthy ($state); see 'make logs'" >&2
      break
    fi
  done
  [ -n "$(docker compose --profile dask ps --all --quiet "$service")" ] ||
    echo "error: service $service was not created; see the messages above" >&2
done
exit 1
