"""The Debian image under the stack's base (for example debian:trixie-slim): kept if present,
pulled if a registry answers, otherwise created with debootstrap from the host's apt mirror
(air-gapped Linux machines, CI; a Mac's Docker Desktop pulls it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from stackctl.proc import Failure, output, run, say

# Like the official slim images: no man pages or docs from later installs, no apt caches
SLIM = """path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
"""


def suite_of(image: str) -> str:
    """The Debian suite of an image reference: ``debian:trixie-slim`` -> ``trixie``."""
    return image.rsplit(":", 1)[-1].split("-", 1)[0]


def apt_site(label: str) -> Optional[str]:
    """The mirror the host's apt uses for an archive label (Debian, Debian-Security), so that
    none is written in the repo; None when apt has none (debootstrap's default then)."""
    listed = output(["apt-get", "indextargets", "--format", "$(LABEL) $(SITE)"]) or ""
    for line in listed.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == label:
            return parts[1]
    return None


def sources(mirror: str, security: str, suite: str) -> str:
    """The new system's apt sources: the suite with its updates and security archives."""
    return (
        f"deb {mirror} {suite} main\n"
        f"deb {mirror} {suite}-updates main\n"
        f"deb {security} {suite}-security main\n"
    )


def ensure(image: str) -> None:
    """Make ``image`` available to the builder (see the module's docstring).

    Raises:
        Failure: it cannot be pulled and debootstrap is missing, needs root, or failed.
    """
    if output(["docker", "image", "inspect", image]) is not None:
        return
    pulled = run(["docker", "pull", "-q", image], check=False, capture=True)
    if pulled.returncode == 0:
        say(f"base-image: pulled {image}")
        return
    why = (pulled.stderr.strip().splitlines() or ["no answer"])[-1]
    if not shutil.which("debootstrap"):
        raise Failure(
            f"{image} cannot be pulled ({why}) and debootstrap is missing to create it; install "
            "it (apt-get install debootstrap) or load the image with 'docker load'"
        )
    if os.getuid() != 0:
        raise Failure(
            f"{image} cannot be pulled and debootstrap needs root to create it; run 'sudo "
            f"python3 scripts/stackctl build base' once"
        )
    suite = suite_of(image)
    mirror = apt_site("Debian")
    security = apt_site("Debian-Security")
    rootfs = Path(tempfile.mkdtemp())
    log = Path(str(rootfs) + ".log")
    try:
        say(
            f"base-image: {image} cannot be pulled; creating it with debootstrap ({suite}"
            + (f" from {mirror}" if mirror else "")
            + ")"
        )
        # --variant=minbase: only Essential packages and apt, the nearest to the slim image
        with open(log, "w") as record:
            made = subprocess.run(
                ["debootstrap", "--variant=minbase", suite, str(rootfs)]
                + ([mirror] if mirror else []),
                stdout=record,
                stderr=subprocess.STDOUT,
            )
        if made.returncode != 0:
            raise Failure(f"debootstrap of {suite} failed; see {log}")
        log.unlink()
        # debootstrap wrote the mirror it used into the new system's sources.list
        listed = (rootfs / "etc/apt/sources.list").read_text().split()
        used = listed[listed.index("deb") + 1] if "deb" in listed else mirror
        security = security or used.rsplit("/debian", 1)[0] + "/debian-security"
        (rootfs / "etc/apt/sources.list").write_text(sources(used, security, suite))
        (rootfs / "etc/dpkg/dpkg.cfg.d/slim").write_text(SLIM)
        (rootfs / "etc/apt/apt.conf.d/99no-recommends").write_text(
            'APT::Install-Recommends "false";\n'
        )
        for each in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            each.unlink()
        for folder in ("var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            for each in (rootfs / folder).glob("*"):
                if each.is_dir() and not each.is_symlink():
                    shutil.rmtree(each)
                else:
                    each.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-", image], stdin=tar.stdout, stdout=subprocess.DEVNULL
        )
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise Failure(f"importing the debootstrapped {suite} as {image} failed (above)")
        size = int(output(["docker", "image", "inspect", "-f", "{{.Size}}", image]) or 0)
        say(f"base-image: created {image} ({size / 2**20:.0f} MiB)")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
