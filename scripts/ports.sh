#!/usr/bin/env bash
# Gives each published service a loopback host port once per project and remembers it in .env
# (MLSTACK_MLFLOW_PORT, MLSTACK_JUPYTER_PORT, MLSTACK_DASK_DASHBOARD_PORT): every later start,
# restore or migration reuses it, so open tabs, bookmarks and printed run links keep working.
# A remembered port that another program holds now is replaced by a free one, with one line
# saying so.
# Usage: scripts/ports.sh [new]   new: only give ports to the services that have none yet (make
# runs it for every command, through scripts/env.sh); without: also check the remembered ones
# (scripts/up.sh, and every restart of the tracking server, before the services start).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

# setting|service|container port|what users call it
published=(
  "MLSTACK_MLFLOW_PORT|mlflow|5000|MLflow"
  "MLSTACK_JUPYTER_PORT|jupyter|8888|Jupyter"
  "MLSTACK_DASK_DASHBOARD_PORT|dask-scheduler|8787|the Dask dashboard"
)

# free PORT: whether 127.0.0.1:PORT can be bound now; free 0 prints a port the kernel picks
# (-I -S: no site packages to load, a third of the start)
free() {
  python3 -I -S -c '
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    print(s.getsockname()[1])
' "$1" 2>/dev/null
}
remember() { # remember KEY VALUE
  if grep -q "^$1=" .env; then
    sed -i "s|^$1=.*|$1=$2|" .env
  else
    echo "$1=$2" >>.env
  fi
}

for entry in "${published[@]}"; do
  IFS='|' read -r key service container_port what <<<"$entry"
  # Set in the environment (even empty: Docker picks), it wins over .env for compose too
  [ -z "${!key+set}" ] || continue
  port="$(env_setting "$key")"
  if [ -z "$port" ]; then
    remember "$key" "$(free 0)"
    continue
  fi
  [ "${1:-}" != new ] || continue
  # Free, or ours already (the service runs on it): kept. Free is asked first: it is the usual
  # case at a start and takes milliseconds, where asking compose takes 0.1 s a service
  free "$port" >/dev/null && continue
  [ "$(docker compose --profile '*' port "$service" "$container_port" 2>/dev/null)" != "127.0.0.1:$port" ] || continue
  new="$(free 0)"
  remember "$key" "$new"
  echo "ports: 127.0.0.1:$port is taken by another program; $what now uses 127.0.0.1:$new ($key in .env)"
done
