"""Fixtures shared by every test folder: a Docker client, the stack's shared images (built once
per session with the project's own build script), a non-root UID, and copies of the project that
make and compose drive under compose project names of their own, torn down with everything they
created."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import docker
import pytest
import requests

from tests.helpers import (
    GIT_TRUSTS_ANY_OWNER,
    IMAGE_NAMES,
    Project,
    copy_project,
    image_ref,
    image_settings,
    project_resources,
    run,
    unique_name,
    wait_for,
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the running stack (the session's ``stack`` fixture) goes to one
    pytest-xdist worker, where they run in file order on one shared stack; those of the team
    stack (``team_stack``, tests/team) likewise to one, the ``team`` group; the others are
    spread over the workers."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "stack" in fixtures:
            item.add_marker(pytest.mark.xdist_group("stack"))
        elif "team_stack" in fixtures:
            item.add_marker(pytest.mark.xdist_group("team"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Stops a pytest-xdist worker whose grouped tests lack their group in their id: the
    scheduler would then spread a group over every worker, each starting a stack of its own
    (pytest 9 with pytest-xdist 3.8 did so silently, doubling the suite's time). The run ends
    with status 3 and one ``error:`` line per worker."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    ungrouped = [
        item.nodeid
        for item in session.items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
    ]
    if ungrouped:
        message = (
            f"pytest-xdist did not group {len(ungrouped)} tests (e.g. {ungrouped[0]}); pin "
            "pytest and pytest-xdist versions that work together in tests/requirements.in"
        )
        # Straight to the terminal: xdist shows a worker's exit only as an INTERNALERROR
        os.write(2, f"error: {message}\n".encode())
        pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """A Docker SDK client for the engine the docker CLI would use (DOCKER_HOST or the socket),
    with a 10-minute read timeout: exporting a 1.4 GB image (test_security) takes over the SDK's
    default 60 s on a busy machine."""
    client = docker.from_env(timeout=600)
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def built_images(docker_client: docker.DockerClient) -> dict[str, str]:
    """The stack's shared images, built (or found up to date) by make build's code; each test
    project builds its own images on them (make up).

    Returns:
        Image name (``base``, ``science``, ...) to its versioned reference.
    """
    result = run(["python3", "scripts/stackctl", "build", *IMAGE_NAMES], timeout=1800)
    assert result.returncode == 0, f"build failed:\n{result.stderr[-4000:]}"
    return {name: image_ref(name) for name in IMAGE_NAMES}


@pytest.fixture(scope="session")
def test_uid() -> int:
    """A non-root UID:GID (the same number) for containers: this user's own, or 4242 when the
    tests run as root, so the host-user mapping is proven with a UID that is not 0."""
    uid = os.getuid()
    return uid if uid != 0 else 4242


@pytest.fixture
def new_project(
    tmp_path: Path, test_uid: int, docker_client: docker.DockerClient
) -> Iterator[Callable[..., Project]]:
    """A factory of project copies, each owned by ``test_uid``; every copy's stack is taken
    down with its volume afterwards, even when the test fails.

    The factory takes the folder name, the compose project name (``None``: leave it to make,
    as a fresh clone would) and ``env_overrides`` (a value of ``None`` removes the variable).
    """
    made: list[Project] = []

    def factory(
        folder: str, project: str | None, env_overrides: dict[str, str | None] | None = None
    ) -> Project:
        directory = copy_project(tmp_path / folder)
        if os.getuid() == 0:
            subprocess.run(["chown", "-R", f"{test_uid}:{test_uid}", str(directory)], check=True)
        env = os.environ | GIT_TRUSTS_ANY_OWNER
        env |= {"MLSTACK_UID": str(test_uid), "MLSTACK_GID": str(test_uid)}
        env.pop("COMPOSE_FILE", None)
        if project:
            env["COMPOSE_PROJECT_NAME"] = project
        else:
            env.pop("COMPOSE_PROJECT_NAME", None)
        for key, value in (env_overrides or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        made.append(Project(directory, env))
        return made[-1]

    yield factory
    left = []
    for project in made:
        if (project.directory / ".env").exists():
            project.down()
            left += project_resources(docker_client, project.name)
    assert not left, f"teardown left {left}"


@pytest.fixture(scope="session")
def registry(docker_client, built_images) -> str:
    """Our registry image (built like the stack's images) running on a loopback port with a
    volume of its own, for the swarm's images and released models; its ``host:port``. Removed
    with its volume at the end."""
    built = run(["python3", "scripts/stackctl", "build", "registry"], timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    name = unique_name("registry")
    settings = image_settings()
    container = docker_client.containers.run(
        f"{settings['MLSTACK_IMAGE_PREFIX']}/registry:{settings['MLSTACK_VERSION']}",
        name=name,
        detach=True,
        ports={"5000/tcp": ("127.0.0.1", None)},
        volumes={name: {"bind": "/var/lib/registry", "mode": "rw"}},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        read_only=True,
    )
    try:
        container.reload()
        address = f"127.0.0.1:{container.ports['5000/tcp'][0]['HostPort']}"

        def answers() -> bool:
            try:
                return requests.get(f"http://{address}/v2/", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(answers, 60, "the registry")
        yield address
    finally:
        container.remove(force=True, v=True)
        docker_client.volumes.get(name).remove(force=True)
