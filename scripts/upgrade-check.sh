#!/usr/bin/env bash
# Before taking a newer stack version: checks that it changes none of the project's files
# (project-files.txt) since the stack version this project last merged, so `git merge` brings
# only stack files and cannot conflict with the project's work. Names the files otherwise.
# Usage: scripts/upgrade-check.sh REF (the stack version: a tag or branch, e.g. mlstack/main)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh

fail() {
  echo "error: $*" >&2
  exit 1
}

ref="${1:-}"
[ -n "$ref" ] || fail "say which stack version to check: make upgrade-check REF=<tag>, after 'git fetch mlstack --tags' (see docs/operations.md)"
git rev-parse --verify --quiet "$ref^{commit}" >/dev/null ||
  fail "'$ref' is not a commit of this repository; run 'git fetch mlstack --tags' first (see docs/operations.md)"
base="$(git merge-base HEAD "$ref")" ||
  fail "'$ref' shares no history with this project; take stack versions from the repository it was made from"

mapfile -t owned < <(project_files)
mapfile -t changed < <(git diff --name-only "$base" "$ref")
touched=()
for file in "${changed[@]}"; do
  for path in "${owned[@]}"; do
    if [ "$file" = "$path" ] || [[ "$file" == "$path"/* ]]; then
      touched+=("$file")
      break
    fi
  done
done
if [ "${#touched[@]}" -gt 0 ]; then
  fail "$ref changes ${#touched[@]} of the project's files (${touched[*]}); merging it may overwrite or conflict with your work there: merge by hand and keep your version"
fi
echo "upgrade-check: $ref changes ${#changed[@]} stack files and none of the project's; take it with 'git merge $ref'"
