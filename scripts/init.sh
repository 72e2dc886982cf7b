#!/usr/bin/env bash
# Starts your own project from this repository: NAME becomes the image prefix (env/images.env,
# committed, so your images never overwrite another project's) and this clone's compose project
# name (.env), so containers, network and volume are your project's own. Usage: scripts/init.sh NAME
set -euo pipefail
cd "$(dirname "$0")/.."

name="${1:-}"
rule="lowercase letters, digits and dashes, starting and ending with a letter or digit"
if [ -z "$name" ]; then
  echo "error: no project name given; run 'make init NAME=<name>' ($rule)" >&2
  exit 2
fi
# Valid as a compose project name and as a Docker image name component alike
if ! [[ "$name" =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]]; then
  echo "error: '$name' is not a valid project name; use $rule, for example 'churn-model'" >&2
  exit 2
fi

# A stack still running under the old name would be orphaned by the rename
if [ -f .env ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  old="$(sed -n 's/^COMPOSE_PROJECT_NAME=//p' .env | tail -n 1)"
  if [ -n "$old" ] && [ "$old" != "$name" ] &&
    [ -n "$(docker compose --profile '*' ps --all --quiet 2>/dev/null)" ]; then
    echo "error: the stack of project '$old' still has containers; run 'make down' first, then 'make init NAME=$name'" >&2
    exit 1
  fi
fi

sed -i "s|^MLSTACK_IMAGE_PREFIX=.*|MLSTACK_IMAGE_PREFIX=$name|" env/images.env
if [ -f .env ]; then
  sed -i "s|^COMPOSE_PROJECT_NAME=.*|COMPOSE_PROJECT_NAME=$name|" .env
fi
# Creates .env when missing (with this name) and copies the new prefix into it
COMPOSE_PROJECT_NAME="$name" scripts/env.sh >/dev/null
version="$(sed -n 's/^MLSTACK_VERSION=//p' env/images.env)"
echo "init: project '$name': images $name/<image>:$version, compose project $name"
echo "init: commit env/images.env, then 'make up'"
if [ -n "${MLSTACK_IMAGE_PREFIX:-}" ] && [ "$MLSTACK_IMAGE_PREFIX" != "$name" ]; then
  echo "warning: MLSTACK_IMAGE_PREFIX=$MLSTACK_IMAGE_PREFIX in your environment overrides env/images.env; unset it" >&2
fi
