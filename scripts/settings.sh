#!/usr/bin/env bash
# Sourced by the other scripts: the one way they read settings. Exports env/images.env's settings
# (stack version, image prefix, base image, Python version), except those already set in the
# environment, which win; env_setting reads .env, project_files reads project-files.txt.
# shellcheck disable=SC2163 # export "$key" exports the variable named by key, as meant
while IFS='=' read -r key value; do
  [ -n "${!key:-}" ] || export "$key=$value"
done < <(grep -E '^[A-Z][A-Z0-9_]*=' "$(dirname "${BASH_SOURCE[0]}")/../env/images.env")

# env_setting KEY: KEY's value in the project's .env (its last line setting KEY), empty when
# .env or KEY is missing. Scripts run from the project folder.
env_setting() {
  if [ -f .env ]; then
    sed -n "s/^$1=//p" .env | tail -n 1
  fi
}

# project_files: the project's own paths, one per line, as project-files.txt lists them (a
# folder without its trailing slash)
project_files() {
  sed -e '/^#/d' -e '/^$/d' -e 's|/$||' "$(dirname "${BASH_SOURCE[0]}")/../project-files.txt"
}

# stack_image NAME: the reference of one of the stack's shared images (base, science, mlflow, ...)
stack_image() {
  echo "$MLSTACK_IMAGE_PREFIX/$1:$MLSTACK_VERSION"
}
