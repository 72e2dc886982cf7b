#!/usr/bin/env bash
# Builds the images in dependency order, siblings side by side, with a progress line per step:
# the stack's shared images (<prefix>/<image>:<version>: base, science, and on it mlflow, jupyter
# and bash; the same for every project on this machine) and this project's own images
# (<compose project>-jupyter and -bash:<version>: requirements.txt on the stack's jupyter and bash).
# The team stack's postgres and s3 images (on base) are built when asked for, and by default
# when COMPOSE_FILE (environment or .env) includes compose.team.yaml (make up TEAM=1). The
# swarm's helpers, registry and gateway (on base), are built only when named.
# Usage: scripts/build.sh [IMAGE...|all]
#   IMAGE: base science mlflow jupyter bash postgres s3 project (default: all the stack uses),
#   registry, gateway; all: every one of them
#        scripts/build.sh --list GROUP: print a group's image names (stack, team, swarm; tests
#   and CI read them here)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

# The one definition of the images. The chain: image=parent ("" means the Debian BASE_IMAGE);
# project is the project's own images, on jupyter and bash
chain=(base= science=base mlflow=science jupyter=science bash=science postgres=base s3=base
  project=jupyter+bash registry=base gateway=base)
# The groups: the stack's shared images, the team stack's, the swarm's helpers
declare -A group=([stack]="base science mlflow jupyter bash" [team]="postgres s3"
  [swarm]="registry gateway")
if [ "${1:-}" = --list ]; then
  if [ -z "${group[${2:-}]+set}" ]; then
    echo "error: no image group '${2:-}'; groups: ${!group[*]}" >&2
    exit 2
  fi
  echo "${group[$2]}"
  exit 0
fi
declare -A parent_of
for link in "${chain[@]}"; do
  parent_of["${link%%=*}"]="${link#*=}"
done
level_of() { # level_of NAME: 0 for base, else one more than its highest parent's
  local parent level=0 above
  for parent in ${parent_of[$1]//+/ }; do
    above=$(($(level_of "$parent") + 1))
    [ "$above" -le "$level" ] || level=$above
  done
  echo "$level"
}
# Build order, by level: an image builds once its parents' level is done
levels=()
for link in "${chain[@]}"; do
  name="${link%%=*}"
  level=$(level_of "$name")
  levels[level]="${levels[level]:-} $name"
done

wanted=("$@")
if [ "${#wanted[@]}" -eq 0 ]; then
  read -ra wanted <<<"${group[stack]} project"
  compose_files="${COMPOSE_FILE:-$(env_setting COMPOSE_FILE)}"
  [[ ":$compose_files:" != *":compose.team.yaml:"* ]] || read -ra wanted <<<"${wanted[*]} ${group[team]}"
elif [ "${wanted[*]}" = all ]; then
  read -ra wanted <<<"${group[stack]} ${group[team]} ${group[swarm]}"
fi
declare -A build
mark() { # mark NAME: build NAME and its ancestors
  local name
  for name in ${1//+/ }; do
    [ -n "$name" ] || continue
    build["$name"]=1
    mark "${parent_of[$name]}"
  done
}
for name in "${wanted[@]}"; do
  if [ -z "${parent_of[$name]+set}" ]; then
    echo "error: unknown image '$name'; known images: ${!parent_of[*]}" >&2
    exit 2
  fi
  mark "$name"
done

project="${COMPOSE_PROJECT_NAME:-$(env_setting COMPOSE_PROJECT_NAME)}"
if [ -n "${build[project]:-}" ] && [ -z "$project" ]; then
  echo "error: no compose project name for the project's images; run 'make build' (it writes .env)" >&2
  exit 2
fi


# One build at a time per project folder: builds share .build/ (the certificates in the build
# context); a second one waits here (flock is in util-linux; elsewhere builds are not guarded)
mkdir -p .build
exec 9>.build/build.lock
if command -v flock >/dev/null; then
  flock 9
fi

# Extra CA certificates (EXTRA_CA_CERTS, from the environment or .env: a PEM file or a folder of
# them) are copied into the build context, where base's Dockerfile adds them to the trust store.
# Unset, the certificates the existing base image has are kept, so that a shell without the
# setting never rebuilds a working base without them.
[ -n "${EXTRA_CA_CERTS:-}" ] || EXTRA_CA_CERTS="$(env_setting EXTRA_CA_CERTS)"
ca_dir=.build/ca-certificates
rm -rf "$ca_dir"
mkdir -p "$ca_dir" .build/logs
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
elif [ -n "${build[base]:-}" ] && docker image inspect "$(stack_image base)" >/dev/null 2>&1; then
  container="$(docker create "$(stack_image base)")"
  docker cp --quiet "$container:/usr/local/share/ca-certificates/." "$ca_dir/"
  docker rm "$container" >/dev/null
fi

[ -z "${build[base]:-}" ] || scripts/base-image.sh "$BASE_IMAGE"

progress() { # progress IMAGE LOG: docker build's output (stdin) to one line per step it runs
  local image="$1" log="$2" line step="" pending="" start=$SECONDS status
  : >"$log"
  while true; do
    if IFS= read -r -t 15 line; then
      printf '%s\n' "$line" >>"$log"
      if [[ "$line" == "Step "* ]]; then
        pending="$line"
        step="${line#Step }"
        step="${step%% :*}"
      elif [ -n "$pending" ]; then
        # A step whose next line is not "Using cache" runs now; only those that take time
        # (RUN, COPY, ADD) are shown
        local instruction="${pending#* : }"
        if [ "$line" != " ---> Using cache" ] && [[ "$instruction" =~ ^(RUN|COPY|ADD) ]]; then
          echo "build: $image step $step: ${instruction:0:60} ($((SECONDS - start)) s)"
        fi
        pending=""
      fi
    else
      status=$?
      # read timed out (> 128): a long step is still running; otherwise the output ended
      [ "$status" -gt 128 ] || break
      echo "build: $image step $step still running, $((SECONDS - start)) s"
    fi
  done
}

source_url="$(git config --get remote.origin.url 2>/dev/null || true)"
# A clone of a local folder names a path: not a source anyone else can fetch, and it would make
# two checkouts of one commit label (and so tag) the shared images differently
case "$source_url" in *://* | *@*:*) ;; *) source_url="" ;; esac
# The stack's own package, built into the project's images
package=images/science/mlstack
build_image() { # build_image NAME [SERVICE]: one image; SERVICE for the project's images
  local name="$1" service="${2:-}" from image dockerfile inputs revision created start=$SECONDS
  local extra=()
  if [ -n "$service" ]; then
    from="$(stack_image "$service")"
    image="$project-$service:$MLSTACK_VERSION"
    dockerfile=images/project/Dockerfile
    # The stack's package is installed in the project's images (images/project/Dockerfile)
    inputs=(images/project "$package" requirements.txt wheels)
    # make clean finds this project's older images by it
    extra=(--label "mlstack.project=$project")
  else
    from="$BASE_IMAGE"
    [ -z "${parent_of[$name]}" ] || from="$(stack_image "${parent_of[$name]}")"
    image="$(stack_image "$name")"
    dockerfile="images/$name/Dockerfile"
    # Not the stack's package below images/science: a change to it must not relabel (and so
    # rebuild) the shared images
    inputs=("images/$name" ":(exclude)$package")
    extra=(--tag "$MLSTACK_IMAGE_PREFIX/$name:latest")
  fi
  # Revision and date of the last commit that changed this image's own files: labels that
  # change only with the image, so they never break the layer cache of the images above
  revision="$(git log -1 --format=%H -- "${inputs[@]}" 2>/dev/null || true)"
  created="$(git log -1 --format=%cI -- "${inputs[@]}" 2>/dev/null || true)"
  if [ -n "$(git status --porcelain -- "${inputs[@]}" 2>/dev/null)" ]; then
    revision="${revision:-uncommitted}-dirty"
  fi
  # A shared image of the same name, when present, seeds the cache: the classic builder only
  # reuses layers of images it built itself, not of images restored with `docker load` (CI's
  # cache). Not for the project's images: --cache-from limits the cache to that one image, so a
  # reverted requirements.txt would rebuild instead of reusing its earlier layers.
  if [ -z "$service" ] && docker image inspect "$image" >/dev/null 2>&1; then
    extra+=(--cache-from "$image")
  fi
  local log=".build/logs/${image//[\/:]/_}.log"
  echo "build: $image (FROM $from)"
  # --force-rm: a failed step leaves no stopped container behind
  if ! docker build --force-rm "${extra[@]}" \
    --file "$dockerfile" \
    --build-arg "BASE_IMAGE=$from" \
    --tag "$image" \
    --label "org.opencontainers.image.title=${image%:*}" \
    --label "org.opencontainers.image.version=$MLSTACK_VERSION" \
    --label "org.opencontainers.image.revision=${revision:-unknown}" \
    --label "org.opencontainers.image.created=${created:-unknown}" \
    --label "org.opencontainers.image.source=${source_url:-unknown}" \
    --label "org.opencontainers.image.base.name=$from" \
    . 2>&1 | progress "$image" "$log"; then
    # The classic builder's deprecation notice is not the error: show what follows it
    grep -v -e '^DEPRECATED: The legacy builder' -e '^ *BuildKit' -e '^ *Install the buildx' \
      -e '^ *https://' -e '^ *deprecated' -e '^$' "$log" | tail -n 25 >&2
    echo "error: building $image failed (above; whole log in $log); behind a TLS-intercepting proxy, set EXTRA_CA_CERTS to its CA bundle (see docs/operations.md)" >&2
    return 1
  fi
  echo "build: $image ready in $((SECONDS - start)) s"
}

for level in "${levels[@]}"; do
  pids=()
  for name in $level; do
    [ -n "${build[$name]:-}" ] || continue
    if [ "$name" = project ]; then
      build_image project jupyter &
      pids+=($!)
      build_image project bash &
    else
      build_image "$name" &
    fi
    pids+=($!)
  done
  failed=0
  for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
  done
  [ "$failed" -eq 0 ] || exit 1
done
