#!/usr/bin/env bash
# Makes the Debian base image (for example debian:trixie-slim) available to the builder: kept if
# present, pulled if a registry answers, otherwise created locally with debootstrap from the
# host's configured apt mirror (air-gapped machines, CI). Usage: scripts/base-image.sh IMAGE
set -euo pipefail

image="${1:?usage: scripts/base-image.sh IMAGE (for example debian:trixie-slim)}"
tag="${image##*:}"
suite="${tag%%-*}" # debian:trixie-slim -> trixie

if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
if docker pull -q "$image" >/dev/null 2>&1; then
  echo "base-image: pulled $image"
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  echo "error: $image cannot be pulled and debootstrap is missing; install it (apt-get install debootstrap) or load the image with 'docker load'" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: $image cannot be pulled and debootstrap needs root to create it; run 'sudo $0 $image' once" >&2
  exit 1
fi

# The mirrors the host's apt already uses (none written in the repo); empty means debootstrap's
# own default mirror. (The $(...) are apt's format fields, not shell expansions.)
# shellcheck disable=SC2016
site() { apt-get indextargets --format '$(LABEL) $(SITE)' 2>/dev/null | awk -v l="$1" '$1 == l { print $2; exit }'; }
mirror="$(site Debian)"
security_mirror="$(site Debian-Security)"

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
echo "base-image: $image cannot be pulled; creating it with debootstrap ($suite${mirror:+ from $mirror})"
# --variant=minbase: only Essential packages and apt, the nearest to the official slim image
debootstrap --variant=minbase "$suite" "$rootfs" ${mirror:+"$mirror"} >"$rootfs.log" 2>&1 || {
  echo "error: debootstrap of $suite failed; see $rootfs.log" >&2
  exit 1
}
rm -f "$rootfs.log"

# debootstrap wrote the mirror it used into the new system's sources.list.
mirror="$(awk '$1 == "deb" { print $2; exit }' "$rootfs/etc/apt/sources.list")"
security_mirror="${security_mirror:-${mirror%/debian}/debian-security}"
cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
SOURCES
# Like the official slim images: no man pages or docs from later installs, no apt caches.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/99no-recommends"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*

tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
echo "base-image: created $image ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
