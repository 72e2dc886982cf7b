#!/usr/bin/env bash
# Backs up, restores or deletes the MLflow data (the mlflow-data volume: backend store, auth
# store, artifact store). Usage: scripts/store.sh backup | restore ARCHIVE | destroy
# backup writes backups/mlflow-<UTC time>.tar.gz; restore and destroy first back up what is
# there; destroy asks for confirmation unless CONFIRM=1.
set -euo pipefail
cd "$(dirname "$0")/.."

store=/usr/local/lib/mlstack/store.py
fail() {
  echo "error: $*" >&2
  exit 1
}
setting() { sed -n "s/^$1=//p" .env | tail -n 1; }

backup() {
  local user
  user="$(setting MLSTACK_UID):$(setting MLSTACK_GID)"
  mkdir -p backups
  # make run by root for another user (see README): the folder is that user's, like the archive
  [ "$(id -u)" -ne 0 ] || chown "$user" backups
  # As the host user, so the archive is yours; the server's files are world-readable
  docker compose run --rm --no-deps --user "$user" \
    --volume "$PWD/backups:/backups" mlflow \
    python "$store" backup "/backups/mlflow-$(date -u +%Y%m%dT%H%M%SZ).tar.gz"
}

restore() {
  local archive="${1:-}"
  [ -n "$archive" ] || fail "say which backup to restore: make restore FILE=backups/<archive>.tar.gz"
  [ -f "$archive" ] || fail "no backup archive at $archive; 'ls backups' lists them"
  archive="$(cd "$(dirname "$archive")" && pwd)/$(basename "$archive")"
  backup
  local running
  running="$(docker compose ps --status running --quiet mlflow)"
  [ -z "$running" ] || docker compose stop mlflow
  # On failure store.py has said why in one line and left the data as it was
  local status=0
  docker compose run --rm --no-deps --volume "$archive:/restore/backup.tar.gz:ro" mlflow \
    python "$store" restore /restore/backup.tar.gz || status=$?
  [ -z "$running" ] || docker compose up --detach --wait mlflow
  [ "$status" -eq 0 ] || exit "$status"
  echo "restore: the MLflow data now comes from $archive"
}

destroy() {
  local project
  project="$(docker compose config --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["name"])')"
  if [ "${CONFIRM:-}" != 1 ]; then
    [ -t 0 ] || fail "make destroy deletes every MLflow run, model and artifact of project $project; run it in a terminal, or with CONFIRM=1"
    read -r -p "Delete all MLflow data of project $project (a backup is made first)? Type yes: " answer
    [ "$answer" = yes ] || fail "destroy cancelled; nothing was deleted"
  fi
  backup
  docker compose --profile '*' down --volumes --remove-orphans
  echo "destroy: the MLflow data of project $project is deleted; the backup above restores it"
}

case "${1:-}" in
  backup) backup ;;
  restore) restore "${2:-}" ;;
  destroy) destroy ;;
  *) fail "usage: scripts/store.sh backup | restore ARCHIVE | destroy" ;;
esac
