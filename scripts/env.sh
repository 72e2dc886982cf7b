#!/usr/bin/env bash
# Writes .env, the per-machine settings Compose reads: creates it when missing (mode 600, the host
# user's IDs, the project name), adds any missing secret (random Jupyter token, MLflow admin
# password and server key) and copies in env/images.env's values.
# MLSTACK_UID, MLSTACK_GID and COMPOSE_PROJECT_NAME from the environment override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f .env ]; then
  uid="${MLSTACK_UID:-$(id -u)}"
  gid="${MLSTACK_GID:-$(id -g)}"
  # Compose's own rule for project names: lowercase letters, digits, dashes and underscores
  project="${COMPOSE_PROJECT_NAME:-$(basename "$PWD" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9_\n-' '-')}"
  (
    umask 077
    cat >.env <<ENV
# Per-machine settings written by make (scripts/env.sh); documented in .env.example.
COMPOSE_PROJECT_NAME=$project
MLSTACK_UID=$uid
MLSTACK_GID=$gid
# MLflow's basic-auth app for a shared server (true/false); see README
MLSTACK_MLFLOW_AUTH=false
ENV
  )
  echo "env: wrote .env (project $project, containers run as $uid:$gid)"
  if [ "$uid" -eq 0 ]; then
    echo "warning: .env makes the containers run as root (UID 0) because make ran as root; set MLSTACK_UID/MLSTACK_GID in .env to a regular user's IDs (see README)" >&2
  fi
fi

# Secrets: made here, kept only in .env; one that is already there is never changed
for key in JUPYTER_TOKEN MLFLOW_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY; do
  if ! grep -q "^$key=." .env; then
    sed -i "/^$key=/d" .env
    echo "$key=$(python3 -c 'import secrets; print(secrets.token_hex(24))')" >>.env
  fi
done

# Copy env/images.env's settings in, replacing older values (the source of truth stays there)
grep -E '^[A-Z_]+=' env/images.env | while IFS='=' read -r key value; do
  if grep -q "^$key=" .env; then
    current="$(grep "^$key=" .env | tail -n 1)"
    [ "$current" = "$key=$value" ] || sed -i "s|^$key=.*|$key=$value|" .env
  else
    echo "$key=$value" >>.env
  fi
done
touch .env
