#!/usr/bin/env bash
# Writes .env, the per-machine settings Compose reads: creates it when missing (mode 600) and
# completes it (also one written by hand with a line or two): the project name and the host
# user's IDs, any missing secret (random Jupyter token, MLflow admin password and server key, the
# team stack's database password and S3 keys), EXTRA_CA_CERTS when given, env/images.env's
# values. Safe to run at any time (make runs it before every command): values already in .env
# are kept. TEAM=1/0 and GPU=1/0 switch the mode (COMPOSE_FILE), one line saying which tracking
# store is then active. MLSTACK_UID, MLSTACK_GID, MLSTACK_USER and COMPOSE_PROJECT_NAME from the
# environment override the defaults of a missing value. scripts/env.sh --secrets prints the
# secrets' names (the tests read them here).
set -euo pipefail
cd "$(dirname "$0")/.."

# The secrets this script makes: the Jupyter token, MLflow's admin password and server key, the
# team stack's database password and S3 keys
SECRETS=(JUPYTER_TOKEN MLFLOW_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY POSTGRES_PASSWORD
  MLSTACK_S3_ACCESS_KEY MLSTACK_S3_SECRET_KEY)
if [ "${1:-}" = --secrets ]; then
  echo "${SECRETS[*]}"
  exit 0
fi
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

if [ ! -f .env ]; then
  (
    umask 077
    echo "# Per-machine settings written by make (scripts/env.sh); documented in .env.example." >.env
  )
  echo "env: wrote .env" >&2
fi
# Secrets live here: readable by its owner only, also when written by hand
chmod 600 .env

# set_value KEY VALUE: KEY=VALUE in .env, replacing an older value (| never occurs in them)
set_value() {
  if grep -q "^$1=" .env; then
    [ "$(grep "^$1=" .env | tail -n 1)" = "$1=$2" ] || sed -i "s|^$1=.*|$1=$2|" .env
  else
    echo "$1=$2" >>.env
  fi
}

# A .env written by hand with a few lines (COMPOSE_FILE=... as the docs show) is completed, never
# refused: the project name, the host user's IDs and the auth switch get their defaults
if ! grep -q "^COMPOSE_PROJECT_NAME=." .env; then
  # Compose's own rule for project names: lowercase letters, digits, dashes and underscores
  set_value COMPOSE_PROJECT_NAME \
    "${COMPOSE_PROJECT_NAME:-$(basename "$PWD" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9_\n-' '-')}"
fi
if ! grep -q "^MLSTACK_UID=." .env; then
  uid="${MLSTACK_UID:-$(id -u)}"
  set_value MLSTACK_UID "$uid"
  set_value MLSTACK_GID "${MLSTACK_GID:-$(id -g)}"
  echo "env: project $(env_setting COMPOSE_PROJECT_NAME), containers run as $uid:${MLSTACK_GID:-$(id -g)}" >&2
  if [ "$uid" -eq 0 ]; then
    echo "warning: .env makes the containers run as root (UID 0) because make ran as root; set MLSTACK_UID/MLSTACK_GID in .env to a regular user's IDs (see docs/operations.md)" >&2
  fi
fi
grep -q "^MLSTACK_GID=." .env || set_value MLSTACK_GID "${MLSTACK_GID:-$(id -g)}"
# MLflow's basic-auth app for a shared server (true/false); see .env.example
grep -q "^MLSTACK_MLFLOW_AUTH=." .env || set_value MLSTACK_MLFLOW_AUTH false

# Who runs the runs: MLflow's "Created by" and, with auth on, the server's admin. The host user's
# name; `id -un` fails for a UID with no name, hence the fallback
if ! grep -q "^MLSTACK_USER=." .env; then
  set_value MLSTACK_USER "${MLSTACK_USER:-$(id -un 2>/dev/null || echo "user$(id -u)")}"
fi

# The mode: which compose files every compose call merges (compose.yaml, then compose.gpu.yaml
# for GPUs, then compose.team.yaml for the team tracking server). Changed only when TEAM or GPU
# is given as 1 or 0
mode_file() { # mode_file FLAG FILE CURRENT: CURRENT's file list with FILE added (1) or removed (0)
  case "$1" in
    1) [[ ":$3:" == *":$2:"* ]] && echo "$3" || echo "$3:$2" ;;
    0) echo ":$3:" | sed "s|:$2:|:|; s|^:||; s|:$||" ;;
    "") echo "$3" ;;
    *)
      echo "error: $2's switch must be 1 or 0 (make up TEAM=1, make up TEAM=0), not '$1'" >&2
      exit 2
      ;;
  esac
}
current="$(env_setting COMPOSE_FILE)"
files="$(mode_file "${GPU:-}" compose.gpu.yaml "${current:-compose.yaml}")"
files="$(mode_file "${TEAM:-}" compose.team.yaml "$files")"
# The team override last, so it wins over the GPU one where both set a value
if [[ ":$files:" == *":compose.team.yaml:"* ]]; then
  files="$(echo ":$files:" | sed 's|:compose.team.yaml:|:|; s|^:||; s|:$||'):compose.team.yaml"
fi
if [ "$files" != "${current:-compose.yaml}" ]; then
  set_value COMPOSE_FILE "$files"
  if [[ ":$files:" == *":compose.team.yaml:"* ]]; then
    store="the team tracking server (PostgreSQL backend store, S3 artifact store, auth on)"
  else
    store="the SQLite tracking server (mlflow-data volume); the team store's volumes are kept"
  fi
  echo "mode: $store; COMPOSE_FILE=$files in .env, so plain docker compose uses it too" >&2
fi

# EXTRA_CA_CERTS given on the command line or in the environment is remembered, so a later
# build in a new shell still trusts the proxy's CA
if [ -n "${EXTRA_CA_CERTS:-}" ] && [ "$(grep '^EXTRA_CA_CERTS=' .env | tail -n 1)" != "EXTRA_CA_CERTS=$EXTRA_CA_CERTS" ]; then
  set_value EXTRA_CA_CERTS "$EXTRA_CA_CERTS"
  echo "env: remembered EXTRA_CA_CERTS=$EXTRA_CA_CERTS in .env" >&2
fi

# Secrets: made here, kept only in .env; one that is already there is never changed, an empty or
# missing one is made anew
# (the team stack's database password and S3 keys too, so that TEAM=1 works at any time)
for key in "${SECRETS[@]}"; do
  if ! grep -q "^$key=." .env; then
    sed -i "/^$key=/d" .env
    echo "$key=$(python3 -c 'import secrets; print(secrets.token_hex(24))')" >>.env
  fi
done

# A host port for each published service, once (scripts/ports.sh): a plain docker compose up
# then uses the same URLs as make up
scripts/ports.sh new

# Copy env/images.env's settings in, replacing older values (the source of truth stays there)
grep -E '^[A-Z_]+=' env/images.env | while IFS='=' read -r key value; do
  set_value "$key" "$value"
done
