#!/usr/bin/env bash
# Serves a model logged to MLflow (`mlflow models serve` in the runner image) on a loopback port
# that Docker picks, waits until it answers, and prints its URL. Usage: scripts/serve.sh MODEL_URI
set -euo pipefail
cd "$(dirname "$0")/.."

model="${1:-}"
if [ -z "$model" ]; then
  echo "error: say which model to serve: make serve MODEL=models:/<name>/<version> (or runs:/<run id>/model)" >&2
  exit 2
fi
# compose.yaml reads the model URI from here; the serve service is recreated when it changes
export MLSTACK_SERVE_MODEL="$model"
if ! docker compose --profile serve up --detach --wait --wait-timeout 300 serve; then
  docker compose logs --no-color --tail 20 serve >&2 || true
  echo "error: the model $model could not be served (logs above); check the URI with the MLflow UI" >&2
  exit 1
fi
echo "Serving $model: POST to http://$(docker compose port serve 8080)/invocations"
