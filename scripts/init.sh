#!/usr/bin/env bash
# Starts your own project from this repository: NAME becomes this clone's compose project name
# (.env), so its containers, network, volume and own images (NAME-jupyter, NAME-bash) are your
# project's, on the stack's shared images. Usage: scripts/init.sh NAME
set -euo pipefail
cd "$(dirname "$0")/.."

name="${1:-}"
rule="lowercase letters, digits and dashes, starting and ending with a letter or digit"
if [ -z "$name" ]; then
  echo "error: no project name given; run 'make init NAME=<name>' ($rule)" >&2
  exit 2
fi
# Valid as a compose project name and as a Docker image name component alike
if ! [[ "$name" =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]]; then
  echo "error: '$name' is not a valid project name; use $rule, for example 'churn-model'" >&2
  exit 2
fi

# The project's package, src/<name with underscores>: a Python name cannot hold a dash
package="${name//-/_}"
if [[ "$package" =~ ^[0-9] ]]; then
  echo "error: '$name' starts with a digit, which the name of its Python package cannot; start it with a letter, for example 'p$name'" >&2
  exit 2
fi
mapfile -t packages < <(find src -mindepth 2 -maxdepth 2 -name __init__.py -printf '%h\n' 2>/dev/null | sort)
if [ "${#packages[@]}" -gt 1 ] && [ ! -d "src/$package" ]; then
  echo "error: src/ holds ${#packages[@]} packages (${packages[*]}); make init renames only one, so rename yours by hand" >&2
  exit 1
fi

# A stack still running under the old name would be orphaned by the rename
if [ -f .env ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  old="$(env_setting COMPOSE_PROJECT_NAME)"
  if [ -n "$old" ] && [ "$old" != "$name" ] &&
    [ -n "$(docker compose --profile '*' ps --all --quiet 2>/dev/null)" ]; then
    echo "error: the stack of project '$old' still has containers; run 'make down' first, then 'make init NAME=$name'" >&2
    exit 1
  fi
fi

if [ -f .env ]; then
  sed -i "s|^COMPOSE_PROJECT_NAME=.*|COMPOSE_PROJECT_NAME=$name|" .env
fi
# Creates .env when missing (with this name)
COMPOSE_PROJECT_NAME="$name" scripts/env.sh >/dev/null
# shellcheck source=SCRIPTDIR/settings.sh
. scripts/settings.sh
echo "init: project '$name': compose project $name, images $name-jupyter and $name-bash:$MLSTACK_VERSION on the stack's $MLSTACK_IMAGE_PREFIX/* images"
# Rename the package and every import of it in the project's own files (project-files.txt)
old="${packages[0]:-}"
old="${old#src/}"
if [ -n "$old" ] && [ "$old" != "$package" ]; then
  mv "src/$old" "src/$package"
  mapfile -t owned < <(project_files)
  for path in "${owned[@]}"; do
    [ -e "$path" ] || continue
    {
      grep -rlwZ --include='*.py' --include='*.ipynb' --include='*.md' --include='*.ini' \
        --include='*.toml' --include='*.cfg' -e "$old" -- "$path" || true
    } | xargs -0 --no-run-if-empty sed -i "s/\b$old\b/$package/g"
  done
  echo "init: package src/$package (was src/$old), its imports renamed; commit the change"
fi
# The project's own README in place of the stack's front page (once: a README of the project's
# is never replaced), kept by the merges of newer stack versions (git's "ours" merge for it, in
# this clone's git settings; the stack's manual stays in docs/)
if [ "$(head -n 1 README.md 2>/dev/null)" = "# mlstack" ]; then
  cat >README.md <<EOT
# $name

A project on [mlstack](docs/index.md): JupyterLab, a runner for jobs and an MLflow tracking
server, started with \`make up\`.

## Quick start

\`\`\`console
\$ make up
\$ docker compose run --rm bash python train.py
\`\`\`

- Your code: \`src/$package/\`, the entry points (\`train.py\`, ...), \`notebooks/\`; your tests:
  \`project_tests/\` (\`make check\`).
- The stack's manual: [docs/](docs/index.md) (\`make docs\` serves it).
EOT
  echo "init: README.md is now the project's own (the stack's manual is in docs/)"
fi
if git rev-parse --git-dir >/dev/null 2>&1; then
  git config merge.ours.driver true
  attributes="$(git rev-parse --git-path info/attributes)"
  mkdir -p "$(dirname "$attributes")"
  grep -qx 'README.md merge=ours' "$attributes" 2>/dev/null || echo 'README.md merge=ours' >>"$attributes"
fi
echo "init: next, 'make up'"
if [ -n "${COMPOSE_PROJECT_NAME:-}" ] && [ "$COMPOSE_PROJECT_NAME" != "$name" ]; then
  echo "warning: COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME in your environment overrides .env; unset it" >&2
fi
