#!/usr/bin/env bash
# Runs the stack on a Docker Swarm. up: pushes the images to REGISTRY, writes the stack file from
# compose.yaml (scripts/swarm-stack.py), deploys it as the stack <project>-swarm with WORKERS Dask
# workers (again: rescales), starts the gateway that forwards loopback ports of this machine to
# MLflow, Jupyter and the Dask dashboard, waits until every service runs and prints the URLs.
# down: removes the stack and the gateway; the volumes stay.
# Usage: scripts/swarm.sh up REGISTRY [WORKERS] | scripts/swarm.sh down
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

project="$(env_setting COMPOSE_PROJECT_NAME)"
stack="$project-swarm"
gateway="$stack-gateway"
# The stack file (with .env's secrets: mode 600) and Dask's settings for the services
dir=.mlstack/swarm
# Gateway port=service:port pairs: the services' own ports; the scheduler's 8786 is not among them
forwards=("5000=mlflow:5000" "8888=jupyter:8888" "8787=dask-scheduler:8787")

fail() {
  echo "error: $*" >&2
  exit 1
}

require_manager() {
  local state
  state="$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}')"
  case "$state" in
  "active true") ;;
  active*) fail "this machine is a worker of its swarm; run make $1 on a manager node" ;;
  *) fail "this Docker engine is in no swarm; create one with 'docker swarm init --advertise-addr <this machine's IP>' (or join one), then run make $1 again" ;;
  esac
}

# url_of PORT: the gateway's loopback address for one of its ports
url_of() { echo "http://$(docker port "$gateway" "$1/tcp" | head -n 1)"; }

# ready: every service of the stack runs all its replicas (Swarm counts a task with a
# healthcheck as running once healthy) and none is in the middle of an update
ready() {
  local name replicas state
  while read -r name replicas; do
    [[ "$replicas" =~ ^([0-9]+)/([0-9]+) ]] || return 1
    [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] || return 1
    state="$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$name")"
    [[ "$state" =~ ^(|completed|rollback_completed)$ ]] || return 1
  done < <(docker stack services "$stack" --format '{{.Name}} {{.Replicas}}')
}

# explain: for each service short of its replicas, its tasks' last error and logs
explain() {
  local name replicas
  while read -r name replicas; do
    [[ "$replicas" =~ ^([0-9]+)/([0-9]+) ]] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] &&
      continue
    echo "---- last logs of $name ----" >&2
    docker service logs --no-task-ids --tail 20 "$name" 2>&1 | tail -n 20 >&2 || true
    echo "error: service $name runs $replicas replicas; last task: $(docker service ps --no-trunc --format '{{.CurrentState}} {{.Error}}' "$name" | head -n 1); see 'docker service ps $name'" >&2
  done < <(docker stack services "$stack" --format '{{.Name}} {{.Replicas}}')
}

up() {
  local registry="$1" workers="${2:-1}" label=mlstack.mlflow
  if ! [[ "$workers" =~ ^[0-9]+$ ]] || [ "$((10#$workers))" -lt 1 ]; then
    fail "WORKERS=$workers is not a number of Dask workers >= 1; use make swarm-up WORKERS=2"
  fi
  workers=$((10#$workers))
  require_manager swarm-up
  [ -n "$registry" ] ||
    fail "no registry given; the swarm's nodes pull the images from one: make swarm-up REGISTRY=127.0.0.1:5000 (none yet? docs/swarm.md)"
  scripts/push.sh "$registry"
  scripts/build.sh gateway | grep -v '^build: .* step ' || true
  docker image inspect "$(stack_image gateway)" >/dev/null ||
    fail "the gateway image was not built; see the build's messages above"

  # MLflow's volume lives on one node: the labelled one, this machine unless one has the label
  if [ -z "$(docker node ls --quiet --filter "node.label=$label=true")" ]; then
    docker node update --label-add "$label=true" "$(docker info --format '{{.Swarm.NodeID}}')" \
      >/dev/null
    echo "swarm: labelled this node ($(hostname)) $label=true: MLflow and its data volume live here"
  fi

  mkdir -p "$dir"
  docker compose --profile dask config --format json |
    (umask 077 && scripts/swarm-stack.py "$registry" "$workers" "/project/$dir/dask.yaml" \
      >"$dir/stack.json")
  docker stack deploy --detach=true --with-registry-auth --prune \
    --compose-file "$dir/stack.json" "$stack"

  # A container of this machine on the stack's overlay network, publishing on loopback only
  if [ "$(docker inspect --format '{{.State.Running}}' "$gateway" 2>/dev/null)" != true ]; then
    docker rm --force "$gateway" >/dev/null 2>&1 || true
    local ports=()
    for pair in "${forwards[@]}"; do
      ports+=(--publish "127.0.0.1::${pair%%=*}")
    done
    docker run --detach --name "$gateway" --network "${stack}_default" \
      --restart unless-stopped --read-only --cap-drop ALL --security-opt no-new-privileges:true \
      --label "mlstack.swarm.stack=$stack" "${ports[@]}" \
      "$(stack_image gateway)" "${forwards[@]}" >/dev/null
  fi
  printf 'distributed:\n  dashboard:\n    link: "%s/status"\n' "$(url_of 8787)" >"$dir/dask.yaml"

  local deadline=$((SECONDS + ${MLSTACK_UP_TIMEOUT:-300}))
  until ready; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      explain
      exit 1
    fi
    sleep 2
  done
  local token
  token="$(env_setting JUPYTER_TOKEN)"
  echo "MLflow:  $(url_of 5000)"
  echo "Jupyter: $(url_of 8888)/lab?token=$token"
  echo "Dask:    $(url_of 8787)/status ($workers workers; Client() connects in Jupyter)"
  echo "swarm: stack $stack; the URLs are on this machine's loopback (elsewhere: ssh -L, see docs/swarm.md)"
}

down() {
  if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = inactive ]; then
    echo "swarm: this Docker engine is in no swarm; nothing to remove"
    return 0
  fi
  require_manager swarm-down
  docker rm --force "$gateway" >/dev/null 2>&1 || true
  if ! docker stack ls --format "{{.Name}}" | grep -Fx "$stack" >/dev/null; then
    echo "swarm: no stack $stack on this swarm"
  else
    docker stack rm "$stack"
    # Swarm removes the tasks and the network in the background: wait, so that a following
    # swarm-up does not meet a network being removed
    local deadline=$((SECONDS + 120))
    while [ -n "$(docker ps --all --quiet --filter "label=com.docker.stack.namespace=$stack")" ] ||
      docker network inspect "${stack}_default" >/dev/null 2>&1; do
      [ "$SECONDS" -lt "$deadline" ] || fail "the stack $stack's containers or network are still there after 120 s; see 'docker stack ps $stack'"
      sleep 1
    done
  fi
  rm -f "$dir/stack.json" "$dir/dask.yaml"
  echo "swarm: volumes kept (${stack}_mlflow-data on the node labelled mlstack.mlflow=true)"
}

case "${1:-}" in
up) up "${2:-}" "${3:-}" ;;
down) down ;;
*) fail "usage: scripts/swarm.sh up REGISTRY [WORKERS] | scripts/swarm.sh down" ;;
esac
