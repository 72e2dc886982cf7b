#!/usr/bin/env bash
# Tags and pushes the images a swarm runs to a registry its nodes pull from: this project's own
# (<project>-jupyter and -bash) and the stack's MLflow image, each as REGISTRY/<local reference>
# (scripts/swarm-stack.py names them the same way). The images are built first (make). With
# IMAGE..., those images instead (make release pushes its model's image so).
# Usage: scripts/push.sh REGISTRY [IMAGE...]   REGISTRY: host:port, e.g. 127.0.0.1:5000
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

registry="${1:-}"
if [ -z "$registry" ]; then
  echo "error: no registry given; name the one the swarm's nodes pull from, e.g. make push REGISTRY=127.0.0.1:5000 (none yet? docs/swarm.md)" >&2
  exit 2
fi
if ! [[ "$registry" =~ ^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*$ ]]; then
  echo "error: REGISTRY=$registry is not host:port (or host[:port]/namespace); give it without scheme, e.g. make push REGISTRY=127.0.0.1:5000" >&2
  exit 2
fi
address="${registry%%/*}"
host="${address%:*}"
port=443
[[ "$address" != *:* ]] || port="${address##*:}"
# Bash's /dev/tcp: does anything listen there (TLS and logins are docker push's business)
# shellcheck disable=SC2016 # $1 and $2 expand in the inner bash, as meant
if ! timeout 5 bash -c ': >"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null; then
  echo "error: no registry answers at $registry; start one (docs/swarm.md) or check the host and port in REGISTRY" >&2
  exit 1
fi

shift
images=("$@")
if [ "${#images[@]}" -eq 0 ]; then
  project="$(env_setting COMPOSE_PROJECT_NAME)"
  images=(
    "$project-jupyter:$MLSTACK_VERSION"
    "$project-bash:$MLSTACK_VERSION"
    "$(stack_image mlflow)"
  )
fi
for image in "${images[@]}"; do
  target="$registry/$image"
  docker tag "$image" "$target"
  echo "push: $target"
  if ! output="$(docker push --quiet "$target" 2>&1)"; then
    echo "$output" | tail -n 3 >&2
    case "$output" in
    *"HTTP response to HTTPS client"*)
      advice="the registry speaks plain HTTP: add it to insecure-registries in /etc/docker/daemon.json on this machine and every node (only for a lab registry), or give it TLS" ;;
    *x509* | *certificate*)
      advice="Docker does not trust the registry's certificate: put its CA in /etc/docker/certs.d/$registry/ca.crt on this machine and every node" ;;
    *unauthorized* | *"authentication required"* | *"no basic auth"* | *denied*)
      advice="the registry wants a login: run 'docker login $registry', then make push again" ;;
    *)
      advice="see Docker's message above" ;;
    esac
    echo "error: pushing $target failed; $advice (docs/swarm.md)" >&2
    exit 1
  fi
done
echo "push: ${#images[@]} images in $registry"
