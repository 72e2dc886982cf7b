"""The benchmark's private workspace: a temporary copy of the project, its own compose project
and image names, the commands run in it, and the removal of everything it created.

Nothing here touches the user's images, containers or files: the stack's shared images are built
under a prefix of their own (``<MLSTACK_IMAGE_PREFIX>-bench-<run id>/<image>``), the stack runs
under a compose project of its own (``<COMPOSE_PROJECT_NAME or folder>-bench-<run id>``), whose
own images are ``<that project>-jupyter`` and ``-bash``; a second project of the same run is
``<that project>-2``. Every container or volume made with the docker SDK carries the label
``mlstack.bench.run=<run id>``.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
from dotenv import dotenv_values

# The repo the benchmark measures (bench/ is one of its folders)
REPO_ROOT = Path(__file__).resolve().parent.parent
# The host package make runs (scripts/stackctl), for the one definition of the image chain and
# of the image settings
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from stackctl import envfile, images, project  # noqa: E402

# On every container and volume the benchmark creates with the SDK, so cleanup finds them
RUN_LABEL = "mlstack.bench.run"
# The label make build puts on a project's own images (its value: the compose project)
PROJECT_LABEL = "mlstack.project"
# The stack's shared images in build order (make build: mlflow, jupyter and bash side by
# side) and the services with a project image of their own, from the chain's definition; the
# services `make up` starts
STACK_IMAGES = images.GROUPS["stack"]
PROJECT_SERVICES = images.PROJECT_SERVICES
SERVICES = ("mlflow", "jupyter")
# The compose project name of the second project is this run's project with this suffix
SECOND_PROJECT_SUFFIX = "-2"
# The name of the project the benchmark measures (package bench_project), made from the repo's
# project folder as `make init NAME=bench-project` would
BENCH_PROJECT = "bench-project"


class BenchError(RuntimeError):
    """A step of the benchmark could not run (a build failed, a service never got healthy)."""


def log(message: str) -> None:
    """One progress line on stderr, with the wall-clock time."""
    print(f"bench [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Workspace:
    """What one benchmark run owns.

    Attributes:
        client: Docker SDK client (DOCKER_HOST or the default socket).
        run_id: 6 hex digits naming everything this run creates.
        directory: the temporary project copy (tracked and untracked-not-ignored files).
        project: its compose project name (also the name of its own images).
        prefix: the image prefix of the stack's shared images built here.
        version: MLSTACK_VERSION (env/images.env, or the environment).
        debian_image: BASE_IMAGE, the Debian image under base (env/images.env or environment).
        base_image: the Debian image the copy's stack images are built on (set by the builds).
        extra_ca: EXTRA_CA_CERTS from the environment or the project's .env ("" when unset).
        image_ids: IDs of every image built here, removed at the end.
    """

    client: docker.DockerClient
    run_id: str
    directory: Path
    project: str
    prefix: str
    version: str
    debian_image: str
    extra_ca: str
    base_image: str = ""
    image_ids: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, client: docker.DockerClient) -> Workspace:
        """Copy the project into a new temporary folder and name this run's resources.

        The image settings come from env/images.env overridden by the environment (as the
        scripts read them); the compose project name from COMPOSE_PROJECT_NAME, else the repo
        folder's name; EXTRA_CA_CERTS from the environment, else the project's .env.
        """
        run_id = secrets.token_hex(3)
        settings = envfile.image_settings()
        folder = re.sub(r"[^a-z0-9_-]", "-", REPO_ROOT.name.lower())
        project = f"{os.environ.get('COMPOSE_PROJECT_NAME') or folder}-bench-{run_id}"
        extra_ca = os.environ.get("EXTRA_CA_CERTS", "")
        if not extra_ca and (REPO_ROOT / ".env").is_file():
            extra_ca = dotenv_values(REPO_ROOT / ".env").get("EXTRA_CA_CERTS") or ""
        directory = Path(tempfile.mkdtemp(prefix=f"mlstack-bench-{run_id}-"))
        copy_project(directory)
        # The probes run in the containers, which see the project folder only
        # (`python bench/probe_mlflow.py` in /project)
        shutil.copytree(
            REPO_ROOT / "bench",
            directory / "project" / "bench",
            ignore=shutil.ignore_patterns("__pycache__", "results*.md"),
        )
        return cls(
            client=client,
            run_id=run_id,
            directory=directory,
            project=project,
            prefix=f"{settings['MLSTACK_IMAGE_PREFIX']}-bench-{run_id}",
            version=settings["MLSTACK_VERSION"],
            debian_image=settings["BASE_IMAGE"],
            extra_ca=extra_ca,
        )

    @property
    def labels(self) -> dict[str, str]:
        """Labels for the containers and volumes this run creates with the SDK."""
        return {RUN_LABEL: self.run_id}

    @property
    def second_project(self) -> str:
        """The compose project name of the run's second project, ``<project>-2``."""
        return self.project + SECOND_PROJECT_SUFFIX

    @property
    def projects(self) -> tuple[str, str]:
        """Both compose project names of this run: its own and the second project's."""
        return (self.project, self.second_project)

    def image(self, name: str) -> str:
        """The reference of one of the stack's shared images built here, e.g.
        ``mlstack-bench-ab12cd/bash:0.1.0``."""
        return f"{self.prefix}/{name}:{self.version}"

    def project_image(self, service: str, project: str | None = None) -> str:
        """The reference of a project's own image for ``service`` (jupyter or bash), as
        make build tags it: ``<project>-<service>:<version>``; the run's project when
        ``project`` is None, e.g. ``main-bench-ab12cd-bash:0.1.0``."""
        return f"{project or self.project}-{service}:{self.version}"

    def images(self, project: str | None = None) -> dict[str, str]:
        """Every image one full `make build` makes for ``project`` (default the run's),
        by display name (``base`` ... ``bash``, ``project jupyter``, ``project bash``) to
        reference, in build order."""
        refs = {name: self.image(name) for name in STACK_IMAGES}
        refs |= {f"project {s}": self.project_image(s, project) for s in PROJECT_SERVICES}
        return refs

    def env(self, project: str | None = None) -> dict[str, str]:
        """The environment for make, the scripts and docker compose in the copy: this run's
        compose project (or ``project``), image prefix and base image; the caller's environment
        otherwise."""
        env = os.environ | {
            "COMPOSE_PROJECT_NAME": project or self.project,
            "MLSTACK_IMAGE_PREFIX": self.prefix,
        }
        if self.base_image:
            env["BASE_IMAGE"] = self.base_image
        if self.extra_ca:
            env["EXTRA_CA_CERTS"] = self.extra_ca
        return env

    def run(
        self, args: list[str], timeout: float = 1200, env: dict[str, str] | None = None
    ) -> tuple[float, str]:
        """Run a command in the copy and time it, with ``env`` added to ``env()``.

        Returns:
            Wall-clock seconds, and the command's output (stdout and stderr together).

        Raises:
            BenchError: on a non-zero exit or a timeout (seconds), with the output's tail.
        """
        start = time.perf_counter()
        with group_process(args, self.directory, self.env() | (env or {})) as process:
            try:
                output, _ = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired as error:
                raise BenchError(f"{' '.join(args)} took over {timeout:.0f} s") from error
        elapsed = time.perf_counter() - start
        if process.returncode != 0:
            raise BenchError(f"{' '.join(args)} failed:\n{output[-3000:]}")
        return elapsed, output

    def compose(self, *args: str, timeout: float = 600) -> tuple[float, str]:
        """``docker compose <args>`` in the copy, timed (see ``run``)."""
        return self.run(["docker", "compose", *args], timeout=timeout)

    def fresh_base(self, purpose: str) -> str:
        """A new image ID for the Debian base (BASE_IMAGE plus one label, no layer), so that
        nothing built on it can hit the classic builder's layer cache: the cache matches on the
        parent image's ID, and no earlier build has this parent.

        Returns:
            Its tag, ``<prefix>/debian:<purpose>``.
        """
        tag = f"{self.prefix}/debian:{purpose}"
        dockerfile = f"FROM {self.debian_image}\nLABEL {RUN_LABEL}={self.run_id}-{purpose}\n"
        image, _ = self.client.images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True
        )
        self.image_ids.add(image.id)
        return tag

    def record_images(self, *refs: str) -> None:
        """Remember the current IDs of these tags, for removal at the end."""
        for ref in refs:
            self.image_ids.add(self.client.images.get(ref).id)

    def cleanup(self) -> list[str]:
        """Remove everything this run created: the compose projects' containers, networks and
        volumes, the SDK-made containers and volumes, every image built (the stack's, both
        projects' own), the project copy. Never raises; an error is returned instead.

        Returns:
            What could not be removed, one line each (empty when all is gone).
        """
        problems: list[str] = []
        if (self.directory / ".env").is_file():
            try:
                self.compose("--profile", "*", "down", "--volumes", "--remove-orphans")
            except BenchError as error:
                problems.append(str(error).splitlines()[0])
        labels = [f"{RUN_LABEL}={self.run_id}"]
        labels += [f"com.docker.compose.project={project}" for project in self.projects]
        for label in labels:
            for container in self.client.containers.list(all=True, filters={"label": label}):
                problems += _attempt(f"container {container.name}", container.remove, force=True)
        for label in labels:
            for volume in self.client.volumes.list(filters={"label": label}):
                problems += _attempt(f"volume {volume.name}", volume.remove, force=True)
        for label in labels[1:]:
            for network in self.client.networks.list(filters={"label": label}):
                problems += _attempt(f"network {network.name}", network.remove)
        problems += self._remove_images()
        shutil.rmtree(self.directory, ignore_errors=True)
        return problems

    def _remove_images(self) -> list[str]:
        """Delete every image built in this run, newest (children) first: those tagged
        ``<prefix>/...``, both projects' own images (by name and by their ``mlstack.project``
        label, older builds of them included) and every image, intermediate ones included, that
        inherited the run's label from a fresh base (``fresh_base``), also after an interrupted
        build."""
        return remove_run_images(
            self.client, self.run_id, self.prefix, self.projects, self.image_ids
        )


def remove_run_images(
    client: docker.DockerClient,
    run_id: str,
    prefix: str,
    projects: tuple[str, ...] = (),
    known: set[str] = frozenset(),
) -> list[str]:
    """Remove the images of one benchmark run (see ``Workspace._remove_images``): tagged
    ``<prefix>/...`` or ``<project>-<service>:...`` for one of ``projects`` (compose project
    names) and a service of PROJECT_SERVICES, labelled ``mlstack.project=<one of projects>`` or
    with the run's label from a fresh base, or in ``known`` (image IDs). An image that also
    has a tag of someone else's (a build served from the layer cache) only loses the run's
    tags. Never raises.

    Returns:
        One line per image that could not be removed.
    """
    repositories = {f"{project}-{service}" for project in projects for service in PROJECT_SERVICES}

    def our_tag(tag: str) -> bool:
        return tag.startswith(f"{prefix}/") or tag.rpartition(":")[0] in repositories

    ours: dict[str, int] = {}
    problems: dict[str, str] = {}
    # The raw list (one request) has each image's labels and creation time in seconds
    for image in client.api.images(all=True):
        labels = image.get("Labels") or {}
        tags = [tag for tag in image.get("RepoTags") or [] if tag != "<none>:<none>"]
        if (
            any(map(our_tag, tags))
            or image["Id"] in known
            or labels.get(PROJECT_LABEL) in projects
            or labels.get(RUN_LABEL, "").startswith(f"{run_id}-")
        ):
            if all(map(our_tag, tags)):
                ours[image["Id"]] = image.get("Created", 0)
                continue
            # A build from the layer cache can give this run's tag to an image the user has
            # (the same ID as <their prefix>/science): only this run's tags go
            for tag in filter(our_tag, tags):
                problems |= {
                    tag: text for text in _attempt(f"tag {tag}", client.images.remove, tag)
                }
    # Children first; images made in the same second may still come in the wrong order, so a
    # refused removal ("has dependent child images") is retried in the next pass
    left = sorted(ours, key=ours.get, reverse=True)
    untagged = list(problems.values())
    for _ in range(5):
        problems = {}
        for image_id in left:
            try:
                client.images.remove(image_id, force=True)
            except docker.errors.ImageNotFound:
                pass  # went with a child removed before it
            except docker.errors.APIError as error:
                problems[image_id] = f"image {image_id[:19]}: {error.explanation or error}"
        left = list(problems)
        if not left:
            break
    return untagged + list(problems.values())


@contextmanager
def group_process(args: list[str], cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """Start a command in a process group of its own, stdout and stderr together as text on
    ``.stdout``, no stdin (so `docker compose run` allocates no terminal).

    If the caller's block raises (a timeout, Ctrl-C, SIGTERM), the whole group is stopped, so
    no `docker build` or `docker compose` started by a script keeps running past the cleanup.
    """
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    except BaseException:
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=grace)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        raise
    finally:
        if process.stdout:
            process.stdout.close()
        process.wait()


def _attempt(what: str, action, *args, **kwargs) -> list[str]:
    """Call ``action``; return [] or a one-line description of why it failed."""
    try:
        action(*args, **kwargs)
    except docker.errors.NotFound:
        return []
    except docker.errors.APIError as error:
        return [f"{what}: {error.explanation or error}"]
    return []


def copy_project(destination: Path) -> Path:
    """Make ``destination`` a clone of the repo with the working tree's changes on top (the
    files a fresh clone has, plus uncommitted edits and untracked files that are not ignored),
    its project folder made the project BENCH_PROJECT by make init's code.

    A git clone with the repo's own remote, so that the image labels make build takes from git
    come out as in the repo.

    Returns:
        ``destination``, a project folder that make and compose can use like a fresh clone.

    Raises:
        BenchError: a git command failed (its message).
    """

    def git(*args: str, cwd: Path = REPO_ROOT) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"git {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    git("clone", "--quiet", str(REPO_ROOT), str(destination))
    try:
        origin = git("config", "--get", "remote.origin.url").strip()
    except BenchError:
        origin = ""
    git("remote", *(["set-url", "origin", origin] if origin else ["remove", "origin"]),
        cwd=destination)  # fmt: skip
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for relative in filter(None, listed.split("\0")):
        source = REPO_ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for relative in filter(None, git("ls-files", "-z", "--deleted").split("\0")):
        (destination / relative).unlink(missing_ok=True)
    # The probes import the project's package by this name, whatever the repo's project is
    project.generate(destination / "project", BENCH_PROJECT)
    return destination
