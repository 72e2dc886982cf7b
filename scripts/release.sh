#!/usr/bin/env bash
# Builds the production image of one model (images/release/Dockerfile, on the stack's base
# image), checks that it serves the model's input example, and prints its reference on the last
# line: <compose project>-model-<name>:<version>. With REGISTRY it also pushes it (scripts/push.sh;
# with PLATFORMS, e.g. linux/amd64,linux/arm64, as one multi-platform image built by buildx).
# The model comes from the stack's tracking server, or from MLSTACK_RELEASE_TRACKING_URI with
# MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD from the environment (a CI job's secrets).
# Usage: scripts/release.sh MODEL [REGISTRY]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

model="${1:-}"
registry="${2:-}"
platforms="${PLATFORMS:-}"
if [ -z "$model" ]; then
  echo "error: say which model to release: make release MODEL=models:/<name>/<version> (or models:/<name>@<alias>, runs:/<run id>/model)" >&2
  exit 2
fi
project="$(env_setting COMPOSE_PROJECT_NAME)"

# The build context: the model's files, its requirements, the stack's lock and package. The
# runner writes into it as the project's UID, which owns it also when make runs as root
mkdir -p .build
context="$(mktemp -d .build/release.XXXXXX)"
container=""
cleanup() {
  [ -z "$container" ] || docker stop "$container" >/dev/null 2>&1 || true
  rm -rf "$context"
}
trap cleanup EXIT
[ "$(id -u)" != 0 ] || chown "$(env_setting MLSTACK_UID):$(env_setting MLSTACK_GID)" "$context"

# Elsewhere than the stack's own server: no local server to start, and the credentials pass by
# name (docker compose run -e NAME), never on a command line
remote=()
if [ -n "${MLSTACK_RELEASE_TRACKING_URI:-}" ]; then
  export MLFLOW_TRACKING_URI="$MLSTACK_RELEASE_TRACKING_URI"
  remote=(--no-deps -e MLFLOW_TRACKING_URI)
  [ -z "${MLFLOW_TRACKING_USERNAME:-}" ] || remote+=(-e MLFLOW_TRACKING_USERNAME)
  [ -z "${MLFLOW_TRACKING_PASSWORD:-}" ] || remote+=(-e MLFLOW_TRACKING_PASSWORD)
fi
docker compose run --rm -T "${remote[@]}" -e MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false \
  bash python -m mlstack.release "$model" "/project/$context"

declare -A release
while IFS='=' read -r key value; do
  release["$key"]="$value"
done <"$context/release.env"
image="$project-${release[IMAGE_SUFFIX]}"
cp images/science/requirements.lock "$context/constraints.txt"
cp -r images/science/mlstack "$context/mlstack"

# Where a prediction comes from, for `docker inspect`
labels=(
  --label "org.opencontainers.image.title=${image%:*}"
  --label "org.opencontainers.image.version=${release[MODEL_VERSION]:-${image##*:}}"
  --label "org.opencontainers.image.revision=${release[GIT_COMMIT]}"
  --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  --label "org.opencontainers.image.base.name=$(stack_image base)"
  --label "mlstack.model.name=${release[MODEL_NAME]}"
  --label "mlstack.model.version=${release[MODEL_VERSION]}"
  --label "mlstack.model.uri=${release[MODEL_URI]}"
  --label "mlstack.model.run_id=${release[RUN_ID]}"
  --label "mlstack.model.git_commit=${release[GIT_COMMIT]}"
  --label "mlstack.version=$MLSTACK_VERSION"
)
echo "release: building $image"
log=".build/logs/release-${image//[\/:]/_}.log"
mkdir -p .build/logs
if ! docker build --force-rm --file images/release/Dockerfile \
  --build-arg "BASE_IMAGE=$(stack_image base)" "${labels[@]}" --tag "$image" "$context" >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "error: building $image failed (above; whole log in $log); behind a TLS-intercepting proxy, set EXTRA_CA_CERTS (docs/operations.md)" >&2
  exit 1
fi

# The smoke test: the image as it ships (read-only, no network but the port) answers /ping and
# predicts the model's input example
container="$(docker run --detach --rm --read-only --publish 127.0.0.1::8080 "$image")"
if ! docker exec "$container" python -m mlstack.serving smoke; then
  docker logs --tail 20 "$container" >&2 || true
  echo "error: $image was built but does not serve its model (logs above)" >&2
  exit 1
fi
docker stop "$container" >/dev/null
container=""

if [ -n "$registry" ]; then
  # Also tagged with this repository's commit, which a version number alone does not say
  tags=("$image")
  commit="$(git rev-parse --short=12 HEAD 2>/dev/null || true)"
  [ -z "$commit" ] || tags+=("$image-$commit")
  if [ -n "$platforms" ]; then
    # buildx's builders do not see local images: the base goes to the registry for each
    # platform first, then the release is built on it
    base="$registry/$(stack_image base)"
    docker buildx build --platform "$platforms" --file images/base/Dockerfile \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" --tag "$base" --push .
    docker buildx build --platform "$platforms" --file images/release/Dockerfile \
      --build-arg "BASE_IMAGE=$base" "${labels[@]}" "${tags[@]/#/--tag=$registry/}" --push "$context"
  else
    [ "${#tags[@]}" -eq 1 ] || docker tag "$image" "${tags[1]}"
    scripts/push.sh "$registry" "${tags[@]}" >&2
  fi
  image="$registry/$image"
fi
echo "$image"
