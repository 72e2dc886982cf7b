#!/usr/bin/env bash
# The stack's smoke test, for a project's CI and after an upgrade: `make up`, one job of the
# stack's own (python -m mlstack.smoke: a run logged and read back), then `make down` when the
# stack was not running before. Independent of the project's code. Usage: scripts/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

was_running="$(docker compose ps --quiet --status running mlflow 2>/dev/null || true)"
if [ -z "$was_running" ]; then
  trap 'make --no-print-directory down >/dev/null 2>&1 || true' EXIT
fi
make --no-print-directory up
docker compose run --rm bash python -m mlstack.smoke
echo "smoke: passed"
