#!/usr/bin/env bash
# make clean: removes the project's containers and networks (all profiles; never the MLflow data
# volume), the Dask workers' spill volume, this project's old images (its <project>-jupyter and
# -bash images of earlier builds and stack versions, found by their mlstack.project label; the
# current ones stay), and the build and runtime leftovers in the project folder. Says which
# images it removed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

docker compose --profile '*' down --remove-orphans
project="$(env_setting COMPOSE_PROJECT_NAME)"
# The Dask workers' scratch volume (what they spilled); never the MLflow data
docker volume rm "${project}_dask-spill" >/dev/null 2>&1 || true
version="$(env_setting MLSTACK_VERSION)"
current=()
for service in jupyter bash; do
  id="$(docker image inspect --format '{{.Id}}' "$project-$service:$version" 2>/dev/null || true)"
  [ -z "$id" ] || current+=("$id")
done
removed=0
while read -r id name; do
  [[ " ${current[*]} " != *" $id "* ]] || continue
  if docker image rm --force "$id" >/dev/null 2>&1; then
    echo "clean: removed old image ${name/<none>:<none>/${id:7:12} (untagged)}"
    removed=$((removed + 1))
  fi
done < <(docker image ls --no-trunc --filter "label=mlstack.project=$project" \
  --format '{{.ID}} {{.Repository}}:{{.Tag}}')
echo "clean: $removed old image(s) of project $project removed; the current ones and the stack's shared images are kept"

rm -rf .build .mlstack .pytest_cache
find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +
