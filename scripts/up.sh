#!/usr/bin/env bash
# Starts mlflow and jupyter (images built first, by make), waits until both are healthy and
# prints their URLs; if one is not healthy in time, says which and shows its logs.
set -euo pipefail
cd "$(dirname "$0")/.."

services=(mlflow jupyter)
wait_seconds="${MLSTACK_UP_TIMEOUT:-180}"

if docker compose up --detach --wait --wait-timeout "$wait_seconds" "${services[@]}"; then
  scripts/urls.sh
  exit 0
fi
for service in "${services[@]}"; do
  id="$(docker compose ps --all --quiet "$service")"
  state="$(docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null || echo "not created")"
  if [ "$state" != "running healthy" ]; then
    echo "---- last logs of $service ----" >&2
    docker compose logs --no-color --tail 40 "$service" >&2 || true
    echo "error: service $service is not healthy ($state); see 'make logs'" >&2
  fi
done
exit 1
