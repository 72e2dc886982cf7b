"""Fixtures shared by every test folder: the repo, its image settings, a Docker client, and the
images themselves (built once per session with the project's own build script)."""

from __future__ import annotations

import os

import docker
import pytest

from tests.helpers import IMAGE_NAMES, image_ref, run


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """A Docker SDK client for the engine the docker CLI would use (DOCKER_HOST or the socket)."""
    client = docker.from_env()
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def built_images(docker_client: docker.DockerClient) -> dict[str, str]:
    """Every image of the stack, built (or found up to date) by scripts/build.sh.

    Returns:
        Image name (``base``, ``science``, ...) to its versioned reference.
    """
    result = run(["scripts/build.sh"], timeout=1800)
    assert result.returncode == 0, f"build failed:\n{result.stderr[-4000:]}"
    return {name: image_ref(name) for name in IMAGE_NAMES}


@pytest.fixture(scope="session")
def test_uid() -> int:
    """A non-root UID:GID (the same number) for containers: this user's own, or 4242 when the
    tests run as root, so the host-user mapping is proven with a UID that is not 0."""
    uid = os.getuid()
    return uid if uid != 0 else 4242
