#!/usr/bin/env bash
# Builds the stack's images in dependency order (all of them, or those named and what they need),
# each FROM its parent through the BASE_IMAGE build argument, tagged <prefix>/<image>:<version>
# and :latest, with OCI labels. Usage: scripts/build.sh [IMAGE...]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

# The chain, in build order: image=parent ("" means the Debian BASE_IMAGE)
chain=(base= science=base jupyter=science bash=science mlflow=base)
declare -A parent_of
order=()
for link in "${chain[@]}"; do
  parent_of["${link%%=*}"]="${link#*=}"
  order+=("${link%%=*}")
done

wanted=("$@")
[ "${#wanted[@]}" -gt 0 ] || wanted=("${order[@]}")
declare -A build
for name in "${wanted[@]}"; do
  if [ -z "${parent_of[$name]+set}" ]; then
    echo "error: unknown image '$name'; known images: ${order[*]}" >&2
    exit 2
  fi
  # An image needs its ancestors built first
  while [ -n "$name" ]; do
    build["$name"]=1
    name="${parent_of[$name]}"
  done
done

# Extra CA certificates (EXTRA_CA_CERTS, from the environment or .env: a PEM file or a folder of
# them) are copied into the build context, where base's Dockerfile adds them to the trust store
if [ -z "${EXTRA_CA_CERTS:-}" ] && [ -f .env ]; then
  EXTRA_CA_CERTS="$(sed -n 's/^EXTRA_CA_CERTS=//p' .env | tail -n 1)"
fi
ca_dir=.build/ca-certificates
rm -rf "$ca_dir"
mkdir -p "$ca_dir"
if [ -n "${EXTRA_CA_CERTS:-}" ]; then
  if [ -f "$EXTRA_CA_CERTS" ]; then
    cp "$EXTRA_CA_CERTS" "$ca_dir/extra.crt"
  elif [ -d "$EXTRA_CA_CERTS" ]; then
    find "$EXTRA_CA_CERTS" -maxdepth 1 -type f \( -name '*.crt' -o -name '*.pem' \) \
      -exec sh -c 'for f; do cp "$f" "$0/$(basename "${f%.*}").crt"; done' "$ca_dir" {} +
  else
    echo "error: EXTRA_CA_CERTS=$EXTRA_CA_CERTS is neither a file nor a folder" >&2
    exit 2
  fi
fi

scripts/base-image.sh "$BASE_IMAGE"

source_url="$(git config --get remote.origin.url 2>/dev/null || true)"
for name in "${order[@]}"; do
  [ -n "${build[$name]:-}" ] || continue
  parent="${parent_of[$name]}"
  from="$BASE_IMAGE"
  [ -z "$parent" ] || from="$MLSTACK_IMAGE_PREFIX/$parent:$MLSTACK_VERSION"
  image="$MLSTACK_IMAGE_PREFIX/$name:$MLSTACK_VERSION"
  # Revision and date of the last commit that changed this image's own files: labels that
  # change only with the image, so they never break the layer cache of the images above
  inputs=("images/$name")
  [[ "$name" != jupyter && "$name" != bash ]] || inputs+=(requirements.txt)
  revision="$(git log -1 --format=%H -- "${inputs[@]}" 2>/dev/null || true)"
  created="$(git log -1 --format=%cI -- "${inputs[@]}" 2>/dev/null || true)"
  if [ -n "$(git status --porcelain -- "${inputs[@]}" 2>/dev/null)" ]; then
    revision="${revision:-uncommitted}-dirty"
  fi
  echo "build: $image (FROM $from)"
  # The image of the same name, when present, seeds the cache: the classic builder only reuses
  # layers of images it built itself, not of images restored with `docker load` (CI's cache)
  cache_from=()
  if docker image inspect "$image" >/dev/null 2>&1; then
    cache_from=(--cache-from "$image")
  fi
  # --force-rm: a failed step leaves no stopped container behind
  docker build --quiet --force-rm "${cache_from[@]}" \
    --file "images/$name/Dockerfile" \
    --build-arg "BASE_IMAGE=$from" \
    --tag "$image" --tag "$MLSTACK_IMAGE_PREFIX/$name:latest" \
    --label "org.opencontainers.image.title=$MLSTACK_IMAGE_PREFIX/$name" \
    --label "org.opencontainers.image.version=$MLSTACK_VERSION" \
    --label "org.opencontainers.image.revision=${revision:-unknown}" \
    --label "org.opencontainers.image.created=${created:-unknown}" \
    --label "org.opencontainers.image.source=${source_url:-unknown}" \
    --label "org.opencontainers.image.base.name=$from" \
    . 2>&1 >/dev/null | awk '
      # The classic builder is the only one on Engine 20.10 without buildx: drop its notice
      /^DEPRECATED: The legacy builder/ { skip = 1; next }
      skip && (/^ / || /^$/) { next }
      { skip = 0; print }' >&2 || {
    echo "error: building $image failed (above); behind a TLS-intercepting proxy, set EXTRA_CA_CERTS to its CA bundle (see README)" >&2
    exit 1
  }
done
