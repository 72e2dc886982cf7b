"""Helpers of the team stack's tests: the running stack's handle (TeamStack) and the names
compose.team.yaml defines. The later suites of this folder build on them."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import docker
from dotenv import dotenv_values

from tests.helpers import REPO_ROOT, Project, run

# What `make up TEAM=1` exports to every compose call; the tests' own compose calls use it too
TEAM_COMPOSE_FILE = "compose.yaml:compose.team.yaml"
# The services compose.team.yaml adds, and the one it changes
TEAM_SERVICES = ("postgres", "s3")
# The credentials of the team stack that make writes into .env
SECRET_KEYS = tuple(
    key
    for key in run(["python3", "scripts/stackctl", "env", "--secrets"], REPO_ROOT).stdout.split()
    # Jupyter's token is in the URL make up prints, by design
    if key != "JUPYTER_TOKEN"
)
# The bucket of compose.team.yaml's x-artifacts-destination (s3://mlflow/artifacts)
BUCKET = "mlflow"


@dataclass
class TeamStack(Project):
    """A running team stack (make and compose run in its folder as in tests.helpers.Project,
    with COMPOSE_FILE naming compose.team.yaml).

    Attributes:
        mlflow_url: the tracking server's host URL that `make up TEAM=1` printed.
    """

    mlflow_url: str = ""
    command_line_watch: "CommandLineWatch | None" = None

    def settings(self) -> dict[str, str]:
        """The project's .env (written by make), secrets included."""
        return {k: v or "" for k, v in dotenv_values(self.directory / ".env").items()}

    @property
    def credentials(self) -> tuple[str, str]:
        """(user, password) of the tracking server's admin: admin and MLFLOW_ADMIN_PASSWORD
        from .env (only the tracking server's container holds it)."""
        return "admin", self.settings()["MLFLOW_ADMIN_PASSWORD"]

    @property
    def stack_credentials(self) -> tuple[str, str]:
        """(user, password) jupyter and bash log in with: MLSTACK_USER and
        MLSTACK_TRACKING_PASSWORD from .env."""
        settings = self.settings()
        return settings["MLSTACK_USER"], settings["MLSTACK_TRACKING_PASSWORD"]

    def secrets(self) -> dict[str, str]:
        """The credential values in .env (SECRET_KEYS), by name."""
        settings = self.settings()
        return {key: settings[key] for key in SECRET_KEYS}

    def container(self, service: str) -> docker.models.containers.Container:
        """The running container of ``service`` (the first, if scaled)."""
        result = self.compose("ps", "--quiet", service)
        ids = result.stdout.split()
        assert ids, f"no container for {service}: {result.stderr}"
        client = docker.from_env()
        try:
            return client.containers.get(ids[0])
        finally:
            client.close()

    def psql(self, sql: str, database: str = "mlflow") -> list[list[str]]:
        """Run ``sql`` with psql in the postgres container (as its superuser, over the socket).

        Returns:
            The rows, each a list of column values as text.

        Raises:
            AssertionError: when psql fails.
        """
        result = self.compose(
            "exec", "-T", "postgres", "psql", "--no-psqlrc", "--tuples-only", "--no-align",
            "--field-separator=|", "--set=ON_ERROR_STOP=1", f"--dbname={database}",
            f"--command={sql}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return [line.split("|") for line in result.stdout.splitlines() if line]

    def bucket_objects(self, prefix: str = "") -> dict[str, str]:
        """The objects in the artifact store's bucket under ``prefix``, listed and read with boto3
        in the mlflow container (the only one holding the S3 keys).

        Returns:
            Object key to the SHA-256 (hex) of its content.
        """
        script = f"""
import boto3, hashlib, json, os
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
found = {{}}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket={BUCKET!r}, Prefix={prefix!r}):
    for item in page.get("Contents", []):
        body = s3.get_object(Bucket={BUCKET!r}, Key=item["Key"])["Body"].read()
        found[item["Key"]] = hashlib.sha256(body).hexdigest()
print(json.dumps(found))
"""
        result = self.compose("exec", "-T", "mlflow", "python", "-c", script)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])


def sha256(data: bytes) -> str:
    """The SHA-256 of ``data``, in hex."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class CommandLineWatch:
    """Reads the command line of every process on the host (/proc/*/cmdline: the containers'
    processes too) every 50 ms while the ``with`` block runs, looking for ``secrets``.

    Attributes:
        samples: how many full scans were made.
        leaks: (pid, command line with each secret masked) of every hit.
    """

    secrets: Iterable[str]
    samples: int = 0
    leaks: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.secrets = [secret for secret in self.secrets if secret]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if any(secret in text for secret in self.secrets):
                    for secret in self.secrets:
                        text = text.replace(secret, "***")
                    self.leaks.append((int(cmdline.parent.name), text))
            self.samples += 1

    def __enter__(self) -> "CommandLineWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
