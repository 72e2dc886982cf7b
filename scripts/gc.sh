#!/usr/bin/env bash
# Frees the disk space of what was deleted in the MLflow UI (deleted runs keep their metadata and
# artifacts until then): after a backup (scripts/store.sh backup, which still holds them), runs
# MLflow's garbage collection, `mlflow gc`, in the mlflow service's container (started if down),
# and says how many bytes of the volume it freed. Usage: scripts/gc.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/store.sh backup
# gc deletes the runs' proxied artifacts (mlflow-artifacts:/) through the tracking server, so it
# runs beside it, as a client of it (with auth on: as its admin, whom the server knows)
docker compose up --detach --wait mlflow 2>/dev/null
# shellcheck disable=SC2016 # expanded by the container's shell
docker compose exec -T mlflow sh -ec '
  export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
  export MLFLOW_TRACKING_USERNAME="$MLFLOW_AUTH_ADMIN_USERNAME"
  export MLFLOW_TRACKING_PASSWORD="$MLFLOW_AUTH_ADMIN_PASSWORD"
  before="$(du -sb /data | cut -f1)"
  # In Python, so the backend store URI (a password in team mode) is on no command line
  python -c "import os; from mlflow.cli import cli; cli.main([\"gc\", \"--backend-store-uri\", os.environ[\"MLFLOW_BACKEND_STORE_URI\"]], prog_name=\"mlflow\")"
  freed=$((before - $(du -sb /data | cut -f1)))
  echo "gc: freed $freed bytes ($(numfmt --to=iec -- "$freed")B) of deleted runs, experiments and models; the backup above still holds them"
'
