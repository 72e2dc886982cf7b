#!/usr/bin/env bash
# Sourced by the other scripts: exports env/images.env's settings (stack version, image prefix,
# base image, Python version), except those already set in the environment, which win.
# shellcheck disable=SC2163 # export "$key" exports the variable named by key, as meant
while IFS='=' read -r key value; do
  [ -n "${!key:-}" ] || export "$key=$value"
done < <(grep -E '^[A-Z][A-Z0-9_]*=' "$(dirname "${BASH_SOURCE[0]}")/../env/images.env")
