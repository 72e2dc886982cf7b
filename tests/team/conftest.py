"""The team stack under test (compose.team.yaml: the tracking server on PostgreSQL and an S3
object store, auth on): one copy of the project owned by a non-root UID, brought up once per
session with `make up TEAM=1` under a compose project name of its own, and torn down with its
volumes and images when the session ends. Every test of this folder shares it (the ``team``
pytest-xdist group, tests/conftest.py). Its compose calls are plain `docker compose` (the mode
comes from .env, as make recorded it), and the tests' MLflow clients on the host keep MLflow's
default settings, like any client outside the stack."""

from __future__ import annotations

import re

import pytest

from tests.helpers import private_copy, project_resources
from tests.team.helpers import TEAM_COMPOSE_FILE, CommandLineWatch, TeamStack


@pytest.fixture(scope="session")
def team_stack(tmp_path_factory, test_uid, docker_client, built_images) -> TeamStack:
    """The team stack, up and healthy (`make up TEAM=1`); removed with its volumes, network and
    own images at the end, even when a test or the start fails."""
    directory, env = private_copy(
        tmp_path_factory.mktemp("team"),
        "team",
        test_uid,
        # The first start migrates a new PostgreSQL database to MLflow's schema: minutes on a
        # machine busy with other suites (make up waits 180 s by default)
        MLSTACK_UP_TIMEOUT="600",
    )
    stack = TeamStack(directory=directory, env=env)
    try:
        # .env first, so that the watch below knows the secrets before anything starts
        made = stack.make(".env", "TEAM=1")
        assert made.returncode == 0, made.stderr
        assert f"COMPOSE_FILE={TEAM_COMPOSE_FILE}" in (directory / ".env").read_text()
        # Every command line on the host while the stack first starts (the schema upgrade of
        # the new database included), checked for the secrets
        with CommandLineWatch(stack.secrets().values()) as watch:
            result = stack.make("up")
        stack.command_line_watch = watch
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        found = re.search(r"^MLflow:\s+(http\S+)$", result.stdout, re.MULTILINE)
        assert found, result.stdout
        stack.mlflow_url = found[1]
        yield stack
    finally:
        if (directory / ".env").exists():
            name = stack.name
            stack.down()
            # A test may have left team mode: the team volumes are then not in the compose
            # configuration that down removed
            for volume in docker_client.volumes.list(
                filters={"label": f"com.docker.compose.project={name}"}
            ):
                volume.remove(force=True)
            left = project_resources(docker_client, name)
            assert not left, f"teardown left {left}"
