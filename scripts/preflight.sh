#!/usr/bin/env bash
# Checks that Docker is usable before make does anything with it: the client is installed, the
# daemon answers, Compose v2 is there and recent enough; with `config`, that compose.yaml with
# .env and env/ makes a valid configuration (make runs that once .env is complete). Prints one
# error line otherwise, and changes nothing.
# Usage: scripts/preflight.sh [config]
set -euo pipefail

# docker compose up --wait (and its timeout), depends_on conditions honoured by `run`
min_compose=2.20.0

fail() {
  echo "error: $*" >&2
  exit 1
}

command -v docker >/dev/null ||
  fail "docker is not installed; install Docker Engine >= 20.10 with the Compose v2 plugin"
docker info >/dev/null 2>&1 ||
  fail "the Docker daemon is not reachable; start Docker (or check DOCKER_HOST) and run make again"
if ! version="$(docker compose version --short 2>/dev/null)"; then
  if command -v docker-compose >/dev/null; then
    fail "only Compose v1 ('docker-compose') is installed; install the Compose v2 plugin ('docker compose'), $min_compose or newer"
  fi
  fail "Compose v2 ('docker compose') is missing; install the Compose plugin, $min_compose or newer"
fi
version="${version#v}"
oldest="$(printf '%s\n%s\n' "$min_compose" "$version" | sort -V | head -n 1)"
[ "$oldest" = "$min_compose" ] ||
  fail "Compose $version is too old; install $min_compose or newer"

[ "${1:-}" = config ] || exit 0
# A broken .env (or a missing env/ file) is reported before anything is built or started
cd "$(dirname "$0")/.."
if [ -f .env ] && ! problem="$(docker compose --profile '*' config --quiet 2>&1)"; then
  fail "the stack's settings are invalid, fix .env or env/ (see .env.example): $(echo "$problem" | head -n 1)"
fi
