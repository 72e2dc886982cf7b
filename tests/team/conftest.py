"""The team stack under test (compose.team.yaml: the tracking server on PostgreSQL and an S3
object store, auth on): one copy of the project owned by a non-root UID, brought up once per
session with `make up TEAM=1` under a compose project name of its own, and torn down with its
volumes and images when the session ends. Every test of this folder shares it (the ``team``
pytest-xdist group, tests/conftest.py)."""

from __future__ import annotations

import os
import re

import pytest

from tests.helpers import private_copy, project_resources
from tests.team.helpers import TEAM_COMPOSE_FILE, TeamStack

# The tests' MLflow clients run on the host, outside the stack: like any such client they must
# not ask the team server for presigned URLs of the object store, which the host cannot reach
# (env/stack.env sets the same in the containers; see README)
os.environ["MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"] = "false"
os.environ["MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"] = "false"


@pytest.fixture(scope="session")
def team_stack(tmp_path_factory, test_uid, docker_client, built_images) -> TeamStack:
    """The team stack, up and healthy (`make up TEAM=1`); removed with its volumes, network and
    own images at the end, even when a test or the start fails."""
    directory, env = private_copy(
        tmp_path_factory.mktemp("team"),
        "team",
        test_uid,
        COMPOSE_FILE=TEAM_COMPOSE_FILE,
        # The first start migrates a new PostgreSQL database to MLflow's schema: minutes on a
        # machine busy with other suites (scripts/up.sh waits 180 s by default)
        MLSTACK_UP_TIMEOUT="600",
    )
    stack = TeamStack(directory=directory, env=env)
    try:
        result = stack.make("up", "TEAM=1")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        found = re.search(r"^MLflow:\s+(http\S+)$", result.stdout, re.MULTILINE)
        assert found, result.stdout
        stack.mlflow_url = found[1]
        yield stack
    finally:
        if (directory / ".env").exists():
            name = stack.name
            stack.down()
            left = project_resources(docker_client, name)
            assert not left, f"teardown left {left}"
