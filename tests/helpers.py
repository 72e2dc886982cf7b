"""Helpers the test folders share: the repo's paths and settings, and running commands."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import requests
from dotenv import dotenv_values

REPO_ROOT = Path(__file__).resolve().parent.parent


def image_group(group: str) -> tuple[str, ...]:
    """The image names of a group as scripts/stackctl/images.py defines them (``stack``, ``team``,
    ``swarm``), in build order."""
    listed = subprocess.run(
        ["python3", "scripts/stackctl", "build", "--list", group],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return tuple(listed.stdout.split())


# The stack's shared images; each project adds its own <project>-jupyter and <project>-bash on
# top of jupyter and bash
IMAGE_NAMES = image_group("stack")
PROJECT_SERVICES = ("jupyter", "bash")
# The swarm's helper images on base, built only when named (make build IMAGES="registry gateway")
SWARM_IMAGE_NAMES = image_group("swarm")
# The team stack's images (compose.team.yaml, make up TEAM=1), on base: built only when used
TEAM_IMAGE_NAMES = image_group("team")
# The scheduling engine's image (make up SCHEDULE=1), on base: built only when used
SCHEDULE_IMAGE_NAMES = image_group("schedule")


def run(
    args: list[str], cwd: Path = REPO_ROOT, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its text output; never raises on a non-zero exit.

    Args:
        args: the command and its arguments.
        cwd: the working directory (default: the repo root).
        env: the whole environment (default: this process's).
        timeout: seconds before the command is killed (subprocess.TimeoutExpired).
    """
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def image_settings() -> dict[str, str]:
    """The image settings (MLSTACK_VERSION, MLSTACK_IMAGE_PREFIX, ...) as the scripts see them:
    env/images.env's values, overridden by the same names in the environment."""
    values = dotenv_values(REPO_ROOT / "env/images.env")
    return {key: os.environ.get(key) or value or "" for key, value in values.items()}


def image_ref(name: str) -> str:
    """The versioned reference of one of the stack's shared images, e.g. ``mlstack/bash:0.1.0``."""
    settings = image_settings()
    return f"{settings['MLSTACK_IMAGE_PREFIX']}/{name}:{settings['MLSTACK_VERSION']}"


def project_image_ref(project: str, service: str) -> str:
    """The reference of a project's own image for a service (``jupyter`` or ``bash``), as
    make build tags it and compose.yaml names it, e.g. ``churn-model-bash:0.1.0``."""
    return f"{project}-{service}:{image_settings()['MLSTACK_VERSION']}"


# For make and git in a copy owned by another UID (the tests' non-root user): git refuses to read
# such a repository by default, and the image labels come from git
GIT_TRUSTS_ANY_OWNER = {
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "safe.directory",
    "GIT_CONFIG_VALUE_0": "*",
}


# The project the stack's tests run on: generated from the template (project/) by make init's own
# code, so that a user's train.py, package or notebooks never decide a stack test
TEST_PROJECT = "fixture-project"
# The stack's test files the containers need (wheels to install offline, jobs of the tests'
# own), copied into the test project's folder (/project in the containers) under these names
STACK_TEST_FILES = {"tests/stack/data/wheels": ".stack-tests/wheels",
                    "tests/stack/jobs": ".stack-tests/jobs"}  # fmt: skip


def stackctl():
    """The host package ``stackctl`` (scripts/stackctl), imported as make runs it, for the one
    definition of what the tests share with it (the image chain, make init's code)."""
    scripts = str(REPO_ROOT / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import stackctl.images
    import stackctl.project

    return stackctl


def generate_project(folder: Path, name: str = TEST_PROJECT) -> list[str]:
    """Make the project folder ``folder`` the project ``name`` as make init does
    (scripts/stackctl/project.py's ``generate``: package, imports, experiment, README renamed).

    Returns:
        The lines init would tell the user about the change.
    """
    return stackctl().project.generate(folder, name)


def copy_project(destination: Path) -> Path:
    """Make ``destination`` a clone of the repo with the working tree's changes on top: the
    files a fresh clone has, plus uncommitted edits and untracked files that are not ignored;
    then its project folder (the template's demo, project/) made the test project
    ``fixture-project`` by make init's code (:func:`generate_project`).

    It is a git clone, with the repo's own remote, so that the image labels make build
    takes from git (revision, date, source) come out as in the repo: a build in the copy then
    reuses the repo's images instead of rebuilding the chain with other labels.

    Returns:
        ``destination``, a project folder that make and compose can use like a fresh clone.
    """
    cloned = run(["git", "clone", "--quiet", str(REPO_ROOT), str(destination)])
    assert cloned.returncode == 0, cloned.stderr
    origin = run(["git", "config", "--get", "remote.origin.url"]).stdout.strip()
    remote = ["set-url", "origin", origin] if origin else ["remove", "origin"]
    assert run(["git", "remote", *remote], cwd=destination).returncode == 0
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    deleted = run(["git", "ls-files", "-z", "--deleted"])
    assert listed.returncode == 0 and deleted.returncode == 0, listed.stderr + deleted.stderr
    for relative in filter(None, listed.stdout.split("\0")):
        source = REPO_ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for relative in filter(None, deleted.stdout.split("\0")):
        (destination / relative).unlink(missing_ok=True)
    generate_project(destination / "project")
    # What the stack's tests run in the containers, which see only the project folder
    for source, target in STACK_TEST_FILES.items():
        shutil.copytree(REPO_ROOT / source, destination / "project" / target)
    return destination


def project_resources(client: docker.DockerClient, project: str) -> list[str]:
    """Names of the containers, volumes, networks and own images that belong to a compose
    project (its images carry the label mlstack.project=<project>, set by make build)."""
    label = {"label": f"com.docker.compose.project={project}"}
    images = client.images.list(filters={"label": f"mlstack.project={project}"})
    return [
        *(c.name for c in client.containers.list(all=True, filters=label)),
        *(v.name for v in client.volumes.list(filters=label)),
        *(n.name for n in client.networks.list(filters=label)),
        *(image.tags[0] if image.tags else image.short_id for image in images),
    ]


def remove_project_images(client: docker.DockerClient, project: str) -> None:
    """Delete a project's own images (<project>-jupyter, <project>-bash, older builds of them);
    the stack's shared images stay. Call after its containers are gone."""
    for image in client.images.list(filters={"label": f"mlstack.project={project}"}):
        client.images.remove(image.id, force=True)


@dataclass
class Project:
    """A copy of the project driven like a clone: make and docker compose run in its folder.

    Attributes:
        directory: the project folder.
        env: the whole environment for make and compose there (project name, UID:GID, ...).
    """

    directory: Path
    env: dict[str, str]

    @property
    def name(self) -> str:
        """The compose project name, as .env (written by make) sets it."""
        for line in (self.directory / ".env").read_text().splitlines():
            if line.startswith("COMPOSE_PROJECT_NAME="):
                return line.split("=", 1)[1]
        raise AssertionError(f"{self.directory}/.env has no COMPOSE_PROJECT_NAME")

    def make(self, *targets: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        """Run make with ``targets`` in the project folder; never raises on failure."""
        return run(["make", "--no-print-directory", *targets], self.directory, self.env, timeout)

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run ``docker compose <args>`` in the project folder as a user types it: once make has
        written .env, the project name and the mode (COMPOSE_FILE) come from .env alone, not
        from this environment. Never raises on failure."""
        env = self.env
        if (self.directory / ".env").exists():
            env = {
                k: v for k, v in env.items() if k not in ("COMPOSE_PROJECT_NAME", "COMPOSE_FILE")
            }
        return run(["docker", "compose", *args], self.directory, env, timeout)

    def down(self) -> None:
        """Remove the project's containers, network and volume (all profiles), then its own
        images (the stack's shared images stay)."""
        self.compose("--profile", "*", "down", "--volumes", "--remove-orphans")
        client = docker.from_env()
        try:
            remove_project_images(client, self.name)
        finally:
            client.close()


def secret_holders(project: str, secret: str) -> set[str]:
    """The services of compose project ``project`` with a running container that holds
    ``secret`` (a password's value) in its configured environment (``docker inspect``) or in
    its first process's (``/proc/1/environ``, read as root in the container).

    Raises:
        AssertionError: ``secret`` is empty (nothing could be found).
    """
    assert secret, "no secret to look for"
    client = docker.from_env()
    try:
        holders = set()
        label = {"label": f"com.docker.compose.project={project}"}
        for container in client.containers.list(filters=label):
            environment = " ".join(container.attrs["Config"]["Env"] or [])
            inside = container.exec_run(["cat", "/proc/1/environ"], user="0").output
            if secret in environment or secret.encode() in inside:
                holders.add(container.labels["com.docker.compose.service"])
        return holders
    finally:
        client.close()


def scheduler_api(directory: Path) -> tuple[str, tuple[str, str]]:
    """The scheduling engine's API URL on the host and its login (user, password), from the
    .env in ``directory`` as a user reads them (MLSTACK_SCHEDULER_PORT, _AUTH)."""
    settings = dotenv_values(directory / ".env")
    return (
        f"http://127.0.0.1:{settings.get('MLSTACK_SCHEDULER_PORT') or ''}/api",
        tuple((settings.get("MLSTACK_SCHEDULER_AUTH") or "").split(":", 1)),
    )


def scheduler_rows(directory: Path, kind: str, query: dict | None = None) -> list[dict]:
    """The engine's ``kind`` (deployments, flow_runs, logs) that ``query`` (a Prefect filter
    body; none: all) selects, through its REST API with the login of ``directory``'s .env.

    Raises:
        AssertionError: the API did not answer 200.
    """
    api, login = scheduler_api(directory)
    found = requests.post(f"{api}/{kind}/filter", json=query or {}, auth=login, timeout=10)
    assert found.status_code == 200, found.text
    return found.json()


def unique_name(purpose: str) -> str:
    """A compose project (or image prefix) name for one test, e.g. ``mlstack-init-1a2b3c4d``:
    the image prefix first, so the resources a test creates are easy to tell apart."""
    return f"{image_settings()['MLSTACK_IMAGE_PREFIX']}-{purpose}-{secrets.token_hex(4)}"


def private_copy(parent: Path, purpose: str, uid: int, **settings: str) -> tuple[Path, dict]:
    """A copy of the project (``copy_project``) in ``parent``, owned by ``uid`` when the tests
    run as root, and the environment its commands run with: a compose project name of its own
    (``unique_name(purpose)``), containers as ``uid``:``uid``, git trusting the copy's owner,
    none of the caller's GPU, TEAM, SCHEDULE or COMPOSE_FILE, then ``settings`` (environment names to
    values, e.g. ``COMPOSE_FILE=...``).

    Returns:
        The copy's directory and the environment (a new dict).
    """
    directory = copy_project(parent / f"mlstack {purpose} project")
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", f"{uid}:{uid}", str(directory)], check=True)
    switches = ("GPU", "TEAM", "SCHEDULE", "COMPOSE_FILE", "COMPOSE_PROFILES")
    env = {k: v for k, v in os.environ.items() if k not in switches}
    env |= GIT_TRUSTS_ANY_OWNER | {
        "COMPOSE_PROJECT_NAME": unique_name(purpose),
        "MLSTACK_UID": str(uid),
        "MLSTACK_GID": str(uid),
    }
    return directory, env | settings


def restart_docker_daemon() -> None:
    """Restart the Docker daemon (systemd's unit, or the dockerd that scripts/provision.sh
    started: stopped, then started again by provision), stopping every container on it.

    Raises:
        AssertionError: when dockerd does not stop within 120 s.
        subprocess.CalledProcessError: when the restart fails.
    """
    if (
        shutil.which("systemctl")
        and subprocess.run(["systemctl", "is-active", "--quiet", "docker"], check=False).returncode
        == 0
    ):
        subprocess.run(["systemctl", "restart", "docker"], check=True, timeout=300)
        return
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=True)
    deadline = time.monotonic() + 120
    while subprocess.run(["pgrep", "-x", "dockerd"], check=False).returncode == 0:
        assert time.monotonic() < deadline, "dockerd did not stop"
        time.sleep(0.5)
    subprocess.run([str(REPO_ROOT / "scripts/provision.sh")], check=True, timeout=300)


def wait_for(condition, seconds: float, what: str):
    """Poll ``condition`` until it returns something true, at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} not within {seconds} s"
        time.sleep(1)
    return result


def wait_until_healthy(project: str, services: set[str], timeout: float = 180) -> None:
    """Wait until the running containers of compose project ``project`` are exactly
    ``services``, each healthy (polled every second).

    Raises:
        AssertionError: when that is not so within ``timeout`` seconds, with the states seen.
    """
    deadline = time.monotonic() + timeout
    states: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        client = docker.from_env()
        try:
            states = {
                c.labels["com.docker.compose.service"]: c.attrs["State"]
                .get("Health", {})
                .get("Status")
                for c in client.containers.list(
                    filters={"label": f"com.docker.compose.project={project}"}
                )
            }
        finally:
            client.close()
        if states == {service: "healthy" for service in services}:
            return
        time.sleep(1)
    raise AssertionError(f"not back and healthy by itself within {timeout} s: {states}")


# The manual's pages whose console commands tests run as written (each names its test); every
# other console block of README.md and docs/ is marked as an example (EXAMPLE_MARK on the line
# before it, invisible on the rendered page), and tests/static checks that
PAGES_RUN_BY_TESTS = {
    "README.md": "tests/stack/test_stack.py",
    "docs/quick-start.md": "tests/stack/test_stack.py",
    "docs/team.md": "tests/team/test_team_page.py",
    "docs/your-code.md": "tests/stack/test_users_code.py",
}
EXAMPLE_MARK = "<!-- example: not run by the tests -->"


def console_blocks(page: Path) -> list[tuple[bool, list[str]]]:
    """The ``console`` blocks of a page of the manual, in order: whether the block is marked as
    an example (:data:`EXAMPLE_MARK` on the line before it), and its commands (the text after
    ``$ ``, continuation lines with a trailing backslash joined, comments kept)."""
    blocks = []
    for mark, block in re.findall(
        r"(?m)^([^\n]*)\n[ \t]*```console\n(.*?)```", page.read_text(), re.DOTALL
    ):
        lines, commands, index = [line.strip() for line in block.splitlines()], [], 0
        while index < len(lines):
            if lines[index].startswith("$ "):
                command = lines[index][2:]
                while command.endswith("\\") and index + 1 < len(lines):
                    index += 1
                    command = command[:-1] + " " + lines[index].strip()
                commands.append(command)
            index += 1
        blocks.append((mark.strip() == EXAMPLE_MARK, commands))
    return blocks


def console_commands(page: Path) -> list[str]:
    """The commands of a page's ``console`` blocks that are not marked as examples, in order."""
    return [c for example, commands in console_blocks(page) if not example for c in commands]
