"""The stack under test: a copy of the project in a folder whose name has a space, owned by a
non-root UID, brought up with `make up` under a compose project name of its own, and torn down
with everything it created when the session ends."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import requests

from tests.helpers import GIT_TRUSTS_ANY_OWNER, Project, copy_project, project_resources


@dataclass
class Stack(Project):
    """A running copy of the project (make and compose run in it as in tests.helpers.Project).

    Attributes:
        project: its compose project name, unique to this test session.
        uid: the UID:GID (same number) its containers run as.
        urls: ``mlflow`` and ``jupyter`` URLs that the last `make up` printed.
    """

    project: str = ""
    uid: int = 0
    urls: dict[str, str] = field(default_factory=dict)

    def up(self) -> None:
        """`make up`, then read the printed URLs into ``urls``.

        Raises:
            AssertionError: when make fails or does not print both URLs.
        """
        result = self.make("up")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        found = dict(re.findall(r"^(MLflow|Jupyter):\s+(http\S+)$", result.stdout, re.MULTILINE))
        assert set(found) == {"MLflow", "Jupyter"}, result.stdout
        self.urls = {"mlflow": found["MLflow"], "jupyter": found["Jupyter"]}

    def execute_notebook(self, path: str, *options: str) -> subprocess.CompletedProcess[str]:
        """Execute a notebook of the project folder in a real kernel of the jupyter container
        (`jupyter nbconvert --execute`, as the container's user), never raising on failure.

        Args:
            path: the notebook, relative to the project folder.
            options: more nbconvert options, e.g. ``--stdout`` or ``--output-dir /tmp``.
        """
        return self.compose(
            "exec",
            "-T",
            "jupyter",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            path,
            *options,
        )

    def rest(self, endpoint: str, payload: dict | None = None, **params: str) -> dict:
        """An MLflow REST API call (``/api/2.0/mlflow/<endpoint>``) at the host's port, as any
        HTTP client makes it: POST ``payload`` when given, else GET with ``params``.

        Raises:
            AssertionError: when the server answers other than 200 (with its answer).
        """
        url = f"{self.urls['mlflow']}/api/2.0/mlflow/{endpoint}"
        if payload is None:
            response = requests.get(url, params=params, timeout=30)
        else:
            response = requests.post(url, json=payload, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def token(self) -> str:
        """The Jupyter token make wrote into this project's .env."""
        return re.search(r"^JUPYTER_TOKEN=(\S+)$", (self.directory / ".env").read_text(), re.M)[1]


@pytest.fixture(scope="session")
def project_copy(tmp_path_factory, test_uid) -> tuple[Path, dict[str, str], str]:
    """A copy of the project owned by ``test_uid``, and the environment to drive it with."""
    directory = copy_project(tmp_path_factory.mktemp("stack") / "mlstack test project")
    project = f"mlstack-test-{secrets.token_hex(4)}"
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", f"{test_uid}:{test_uid}", str(directory)], check=True)
    env = (
        os.environ
        | GIT_TRUSTS_ANY_OWNER
        | {
            "COMPOSE_PROJECT_NAME": project,
            "MLSTACK_UID": str(test_uid),
            "MLSTACK_GID": str(test_uid),
        }
    )
    return directory, env, project


@pytest.fixture(scope="session")
def stack(project_copy, docker_client, built_images, test_uid) -> Stack:
    """The stack, up and healthy; removed with its volume and network at the end."""
    directory, env, project = project_copy
    stack = Stack(directory=directory, project=project, uid=test_uid, env=env)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        left = project_resources(docker_client, project)
        assert not left, f"teardown left {left}"
