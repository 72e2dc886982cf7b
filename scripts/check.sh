#!/usr/bin/env bash
# The project's own checks, in the runner container (the image's pinned black and pytest, the
# project's packages): black --check on the project's files (project-files.txt), then the
# project's tests (project_tests/). Exits non-zero when either fails. Usage: scripts/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

# Black formats Python: the project's folders and .py files (not requirements.txt, data files)
paths=()
while IFS= read -r path; do
  if [ -d "$path" ] || [[ "$path" == *.py && -f "$path" ]]; then
    paths+=("$path")
  fi
done < <(project_files)

# --no-deps: the checks need no tracking server
docker compose run --rm --no-deps bash bash -c \
  'black --check "$@" && python -m pytest --quiet project_tests' check "${paths[@]}"
echo "check: black and the project's tests passed"
