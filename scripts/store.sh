#!/usr/bin/env bash
# Backs up, restores or deletes the MLflow data (the mlflow-data volume: backend store, auth
# store, artifact store; in team mode, compose.team.yaml, the PostgreSQL databases and the
# bucket's artifacts), or moves the SQLite store into the team store.
# Usage: scripts/store.sh backup | restore ARCHIVE | destroy | migrate
# backup writes backups/mlflow-<UTC time>.tar.gz (mlflow-team-... in team mode); restore and
# destroy first back up what is there; destroy asks for confirmation unless CONFIRM=1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

store=/usr/local/lib/mlstack/store.py
# The team store's helper, mounted from here rather than baked into the shared mlflow image
team_store=/usr/local/lib/mlstack/team_store.py
team_store_mount="$PWD/scripts/team_store.py:$team_store:ro"
databases=(mlflow mlflow_auth)
fail() {
  echo "error: $*" >&2
  exit 1
}
project_name() {
  docker compose config --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["name"])'
}
# Team mode: compose.team.yaml is among the compose files (TEAM=1, or COMPOSE_FILE in .env)
# (grep reads all of it: with -q it could exit first and fail the pipeline with SIGPIPE)
is_team() { docker compose config --services | grep -x postgres >/dev/null; }
user="$(env_setting MLSTACK_UID):$(env_setting MLSTACK_GID)"

backups_folder() {
  mkdir -p backups
  # make run by root for another user (see docs/operations.md): the folder is that user's, like the archive
  [ "$(id -u)" -ne 0 ] || chown "$user" backups
}

# Folders under backups/ for intermediate files (made by scratch NAME, in $scratch_dir),
# removed at exit whatever happens
scratches=()
trap 'rm -rf "${scratches[@]}"' EXIT
scratch() {
  scratch_dir="$(mktemp -d "$PWD/backups/.$1-XXXXXX")"
  scratches+=("$scratch_dir")
  [ "$(id -u)" -ne 0 ] || chown "$user" "$scratch_dir"
}

# Starts mlflow again when it was running before (start_again "$running") and prints the URLs
# (the same as before: the host port is remembered in .env)
start_again() {
  [ -n "$1" ] || return 0
  scripts/ports.sh
  docker compose up --detach --wait mlflow
  scripts/urls.sh
}

# The team databases (pg_dump, custom format) and the bucket's artifacts in one archive
team_backup() {
  backups_folder
  docker compose up --detach --wait postgres s3
  scratch dumps
  local dumps="$scratch_dir"
  for database in "${databases[@]}"; do
    docker compose exec -T postgres pg_dump --format=custom --dbname="$database" \
      >"$dumps/$database.dump"
  done
  [ "$(id -u)" -ne 0 ] || chown -R "$user" "$dumps"
  docker compose run --rm --no-deps --user "$user" --volume "$PWD/backups:/backups" \
    --volume "$team_store_mount" mlflow python "$team_store" backup \
    "/backups/$(basename "$dumps")" "/backups/mlflow-team-$(date -u +%Y%m%dT%H%M%SZ).tar.gz"
}

backup() {
  if is_team; then
    team_backup
    return
  fi
  backups_folder
  # As the host user, so the archive is yours; the server's files are world-readable
  docker compose run --rm --no-deps --user "$user" \
    --volume "$PWD/backups:/backups" mlflow \
    python "$store" backup "/backups/mlflow-$(date -u +%Y%m%dT%H%M%SZ).tar.gz"
}

# Stops the tracking server, the only writer of the store, and prints its container id when it
# was running (for start_again): a backup taken after this holds every run logged before
stop_writer() {
  local running
  running="$(docker compose ps --status running --quiet mlflow)"
  [ -z "$running" ] || docker compose stop mlflow >&2
  echo "$running"
}

# Checks the archive (members, each dump readable by pg_restore --list) before changing
# anything; stops the server, backs up, then swaps in an order where an interruption at any
# point leaves one complete store: the archive's artifacts are uploaded beside the old ones,
# each database is restored in one transaction, and only then are the old artifacts deleted
team_restore() {
  local archive="$1" name="$2"
  backups_folder
  scratch restore
  # Kept apart: team_backup below makes a scratch folder of its own (scratch_dir changes)
  local staging="$scratch_dir"
  docker compose up --detach --wait postgres s3
  docker compose run --rm --no-deps --user "$user" --volume "$archive:/restore/$name:ro" \
    --volume "$staging:/staging" --volume "$team_store_mount" mlflow \
    python "$team_store" check "/restore/$name" /staging
  for database in "${databases[@]}"; do
    docker compose exec -T postgres pg_restore --list <"$staging/$database.dump" >/dev/null 2>&1 ||
      fail "$database.dump in $name is not a readable pg_dump archive; nothing was changed"
  done
  local running
  running="$(stop_writer)"
  team_backup
  # As the user who unpacked it: the archive's folders may be readable by their owner only
  team_artifacts() {
    docker compose run --rm --no-deps --user "$user" --volume "$staging:/staging:ro" \
      --volume "$team_store_mount" mlflow python "$team_store" "$1" /staging
  }
  team_artifacts upload-artifacts
  for database in "${databases[@]}"; do
    docker compose exec -T postgres pg_restore --clean --if-exists --single-transaction \
      --exit-on-error --dbname="$database" <"$staging/$database.dump" ||
      fail "pg_restore of $database failed (above); that database is as it was; the backup above holds all"
    echo "restore: database $database restored"
  done
  team_artifacts prune-artifacts
  start_again "$running"
  echo "restore: the team store's data now comes from $archive"
}

restore() {
  local archive="${1:-}" name
  [ -n "$archive" ] || fail "say which backup to restore: make restore FILE=backups/<archive>.tar.gz"
  [ -f "$archive" ] || fail "no backup archive at $archive; 'ls backups' lists them"
  archive="$(cd "$(dirname "$archive")" && pwd)/$(basename "$archive")"
  name="$(basename "$archive")"
  # Mounted under its own name (so errors name it), and a volume spec splits at ':' and ','
  case "$name" in *[:,]*)
    fail "the archive's name has a ':' or ',', which Docker cannot mount; rename it and run make restore again" ;;
  esac
  if is_team; then
    team_restore "$archive" "$name"
    return
  fi
  local running
  running="$(stop_writer)"
  backup
  # On failure store.py has said why in one line and left the data as it was; a kill midway is
  # finished or undone by the server's next start (store.py prepare)
  local status=0
  docker compose run --rm --no-deps --volume "$archive:/restore/$name:ro" mlflow \
    python "$store" restore "/restore/$name" || status=$?
  start_again "$running"
  [ "$status" -eq 0 ] || exit "$status"
  echo "restore: the MLflow data now comes from $archive"
}

# Deletes the active mode's store: the SQLite default's volume, or in team mode the PostgreSQL
# and object store volumes; the other mode's volume is kept. Says which, backs them up first
destroy() {
  local project volumes=() what
  project="$(project_name)"
  if is_team; then
    volumes=("${project}_postgres-data" "${project}_s3-data")
    what="the team store (volumes ${volumes[*]}); the SQLite store (${project}_mlflow-data) is kept"
  else
    volumes=("${project}_mlflow-data")
    what="the SQLite store (volume ${volumes[*]}); a team store's volumes are kept"
  fi
  if [ "${CONFIRM:-}" != 1 ]; then
    [ -t 0 ] || fail "make destroy deletes every run, model and artifact of $what, in project $project; run it in a terminal, or with CONFIRM=1"
    read -r -p "Delete every run, model and artifact of $what (a backup is made first)? Type yes: " answer
    [ "$answer" = yes ] || fail "destroy cancelled; nothing was deleted"
  fi
  backup
  docker compose --profile '*' down --remove-orphans
  local volume
  for volume in "${volumes[@]}"; do
    if docker volume inspect "$volume" >/dev/null 2>&1; then
      docker volume rm "$volume" >/dev/null
      echo "destroy: deleted volume $volume"
    fi
  done
  echo "destroy: $what; the backup above restores it"
}

# Copies the SQLite store (mlflow-data, mounted read-only) into an empty team store; the team
# server is stopped meanwhile, so nothing else writes there
migrate() {
  is_team || fail "make migrate-store moves the SQLite store into the team store: run make migrate-store TEAM=1"
  local volume
  volume="$(project_name)_mlflow-data"
  docker volume inspect "$volume" >/dev/null 2>&1 ||
    fail "no SQLite store to migrate (no volume $volume); the team store is left as it is"
  local running
  running="$(stop_writer)"
  docker compose up --detach --wait postgres s3
  local status=0
  # The SQLite store replaces the service's /data mount, read-only
  docker compose run --rm --no-deps --volume "$volume:/data:ro" --volume "$team_store_mount" \
    mlflow python "$team_store" migrate /data || status=$?
  start_again "$running"
  exit "$status"
}

case "${1:-}" in
  backup) backup ;;
  restore) restore "${2:-}" ;;
  destroy) destroy ;;
  migrate) migrate ;;
  *) fail "usage: scripts/store.sh backup | restore ARCHIVE | destroy | migrate" ;;
esac
