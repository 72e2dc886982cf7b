"""The manual's team page (docs/team.md) as a new user meets it: on a fresh clone owned by a
non-root user (UID 1000, the usual first Linux user, in the docker group), every console command
of the page runs in order, as that user, exactly as written, and does what the page says: the
team server comes up, the job's run lands in PostgreSQL, the admin adds a member who logs in
with the password shown once and grants them a permission."""

from __future__ import annotations

import grp
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
import pytest
import requests

from tests.helpers import REPO_ROOT, console_commands, copy_project, project_resources

USER_UID = 1000
TEAM_PAGE = REPO_ROOT / "docs" / "team.md"


def test_every_console_command_of_the_team_page_works_as_written(built_images):
    commands = console_commands(TEAM_PAGE)
    assert commands[0] == "make up TEAM=1", commands
    assert commands[1].startswith("docker compose run --rm bash python train.py"), commands
    assert "make user-add NAME=ada" in commands, commands
    folder = f"mlstack-readme-{secrets.token_hex(4)}"
    # Outside pytest's own temporary folders, which only their owner may enter
    base = Path(tempfile.mkdtemp(prefix="mlstack-readme-"))
    base.chmod(0o755)
    directory = copy_project(base / folder)
    home = base / "home"
    home.mkdir()
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", f"{USER_UID}:{USER_UID}", str(base)], check=True)
        as_user = [
            "setpriv",
            f"--reuid={USER_UID}",
            f"--regid={USER_UID}",
            f"--groups={grp.getgrnam('docker').gr_gid}",
            "--",
        ]
    elif os.getuid() == USER_UID:
        as_user = []
    else:
        pytest.skip(f"runs as root (switching to UID {USER_UID}) or as UID {USER_UID} itself")
    # A login's environment: no compose, mlstack or MLflow variable of the test run
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": "*",
    }
    client = docker.from_env()
    project = folder
    try:
        outputs = []
        for command in commands:
            result = subprocess.run(
                [*as_user, "bash", "-c", command],
                cwd=directory,
                env=env,
                capture_output=True,
                text=True,
                timeout=1200,
            )
            assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
            outputs.append(result.stdout + result.stderr)
        settings = dict(
            line.split("=", 1)
            for line in (directory / ".env").read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        assert settings["MLSTACK_UID"] == str(USER_UID)
        assert settings["COMPOSE_FILE"] == "compose.yaml:compose.team.yaml"
        # make up printed the server's URL; the job's run is a row of PostgreSQL's runs table
        url = re.search(r"^MLflow:\s+(http\S+)$", outputs[0], re.MULTILINE)[1]
        run_id = re.search(r"^run ([0-9a-f]{32}) logged", outputs[1], re.MULTILINE)[1]
        rows = subprocess.run(
            ["docker", "compose", "exec", "-T", "postgres", "psql", "-tA", "-d", "mlflow",
             "-c", f"SELECT status FROM runs WHERE run_uuid = '{run_id}'"],
            cwd=directory, env=env | {"HOME": "/root"}, capture_output=True, text=True,
        )  # fmt: skip
        assert rows.stdout.strip() == "FINISHED", rows.stdout + rows.stderr
        # The user the admin created logs in with the password shown once, and was granted EDIT
        added = outputs[commands.index("make user-add NAME=ada")]
        password = re.search(r"password \(shown once, give it to ada\): (\S+)", added)[1]
        search = requests.get(
            f"{url}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            auth=("ada", password),
            timeout=60,
        )
        assert search.status_code == 200, search.text
        assert "ada" in outputs[commands.index("make users")].split()
        assert "users: ada has EDIT on experiment Default" in outputs[-1]
    finally:
        subprocess.run(
            ["docker", "compose", "--profile", "*", "down", "--volumes", "--remove-orphans"],
            cwd=directory,
            env=env | {"HOME": "/root"},
            capture_output=True,
        )
        for image in client.images.list(filters={"label": f"mlstack.project={project}"}):
            client.images.remove(image.id, force=True)
        left = project_resources(client, project)
        client.close()
        shutil.rmtree(base, ignore_errors=True)
        assert not left, f"teardown left {left}"
