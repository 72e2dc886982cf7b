"""Fixtures of the tools tests: copies of the project that make and compose drive under compose
project names of their own, torn down with everything they created, and the Dev Containers CLI
installed from npm into the session's temporary folder."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import docker
import pytest

from tests.helpers import (
    GIT_TRUSTS_ANY_OWNER,
    Project,
    copy_project,
    image_settings,
    project_resources,
    run,
)

# The Dev Containers CLI the tests run (npm package @devcontainers/cli)
DEVCONTAINER_CLI_VERSION = "0.89.0"


def unique_name(purpose: str) -> str:
    """A compose project (or image prefix) name for one test, e.g. ``mlstack-init-1a2b3c4d``:
    the image prefix first, so the resources a test creates are easy to tell apart."""
    return f"{image_settings()['MLSTACK_IMAGE_PREFIX']}-{purpose}-{secrets.token_hex(4)}"


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
def devcontainer_cli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``devcontainer`` command of @devcontainers/cli, installed with npm into a temporary
    folder (never into the project).

    Raises:
        pytest.fail.Exception: when Node.js >= 20 or npm is missing.
        AssertionError: when the install fails.
    """
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.fail("the Dev Containers test needs Node.js >= 20 and npm; install them")
    major = run([node, "--version"]).stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < 20:
        pytest.fail(f"the Dev Containers CLI needs Node.js >= 20, not {major}; upgrade Node.js")
    prefix = tmp_path_factory.mktemp("devcontainers-cli")
    result = run(
        [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"@devcontainers/cli@{DEVCONTAINER_CLI_VERSION}",
        ],
        cwd=prefix,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return prefix / "node_modules" / ".bin" / "devcontainer"
