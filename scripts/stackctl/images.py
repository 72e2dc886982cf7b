"""The images: the one definition of their chain (each image and its parents) and groups, the
build order, and the build itself (siblings side by side, a progress line per step)."""

from __future__ import annotations

import fcntl
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from stackctl import envfile, modes
from stackctl.proc import ROOT, Failure, output, run, say

# Each image and its parents: () is the Debian BASE_IMAGE; ``project`` is the project's own
# images, one on jupyter and one on bash (and, when scheduler is built too, the project's
# scheduler worker: its bash image with the scheduler's engine client)
CHAIN: Dict[str, Tuple[str, ...]] = {
    "base": (),
    "science": ("base",),
    "mlflow": ("science",),
    "jupyter": ("science",),
    "bash": ("science",),
    "postgres": ("base",),
    "s3": ("base",),
    "project": ("jupyter", "bash"),
    "registry": ("base",),
    "gateway": ("base",),
    "scheduler": ("base",),
}
# The stack's shared images, the team stack's, the swarm's helpers
GROUPS: Dict[str, Tuple[str, ...]] = {
    "stack": ("base", "science", "mlflow", "jupyter", "bash"),
    "team": ("postgres", "s3"),
    "swarm": ("registry", "gateway"),
    "schedule": ("scheduler",),
}
PROJECT_SERVICES = ("jupyter", "bash")


def tree(debian_image: str) -> List[str]:
    """The chain as text lines, one image per line under its parent (the Debian image
    ``debian_image`` at the top); an image with several parents shows under the first, its
    others named. The manual's picture of the chain is this output (a static test compares)."""
    lines = [debian_image]

    def below(parent: str, indent: str) -> None:
        children = [name for name, parents in CHAIN.items() if parents[:1] == (parent,)]
        for index, child in enumerate(children):
            last = index == len(children) - 1
            others = CHAIN[child][1:]
            also = f" (also on {', '.join(others)})" if others else ""
            lines.append(f"{indent}{'└─' if last else '├─'} {child}{also}")
            below(child, indent + ("   " if last else "│  "))

    roots = [name for name, parents in CHAIN.items() if not parents]
    for index, root in enumerate(roots):
        last = index == len(roots) - 1
        lines.append(f"{'└─' if last else '├─'} {root}")
        below(root, "   " if last else "│  ")
    return lines


def level(name: str) -> int:
    """0 for an image on the Debian base, else one more than its highest parent's."""
    return max((level(parent) + 1 for parent in CHAIN[name]), default=0)


def levels() -> List[List[str]]:
    """The build order: images by level, in CHAIN's order within one; a level's images build
    side by side once the level before is done."""
    order: List[List[str]] = []
    for name in CHAIN:
        while len(order) <= level(name):
            order.append([])
        order[level(name)].append(name)
    return order


def wanted(names: Sequence[str], compose_files: str, scheduled: bool = False) -> List[str]:
    """The images to build for a request, with every ancestor, in CHAIN's order.

    Args:
        names: image names; none: the stack's and the project's (and the team's when
            ``compose_files`` includes the team mode, the scheduler when ``scheduled``);
            ``["all"]``: every group's.
        compose_files: the mode's COMPOSE_FILE value.
        scheduled: whether the scheduled jobs are on (COMPOSE_PROFILES).

    Raises:
        Failure: an unknown name (status 2), listing the known ones.
    """
    if not names:
        names = [*GROUPS["stack"], "project"]
        if modes.is_team(compose_files):
            names += GROUPS["team"]
        if scheduled:
            names += GROUPS["schedule"]
    elif list(names) == ["all"]:
        names = [*GROUPS["stack"], *GROUPS["team"], *GROUPS["swarm"], *GROUPS["schedule"]]
    chosen = set()

    def mark(name: str) -> None:
        chosen.add(name)
        for parent in CHAIN[name]:
            mark(parent)

    for name in names:
        if name not in CHAIN:
            raise Failure(f"unknown image '{name}'; known images: {' '.join(CHAIN)}", status=2)
        mark(name)
    return [name for name in CHAIN if name in chosen]


def source_url(origin: str) -> str:
    """The source label of the project's images from the clone's origin: a URL anyone could
    fetch, without its userinfo (CI systems check out with ``https://user:token@host/...``);
    empty for a clone of a local folder (a path, not a source)."""
    if "://" in origin:
        scheme, rest = origin.split("://", 1)
        host, slash, path = rest.partition("/")
        return f"{scheme}://{host.rsplit('@', 1)[-1]}{slash}{path}"
    if re.match(r"^[^/]*@[^/]*:", origin):
        # scp-like (git@host:org/repo.git): a user name, never a password
        return origin
    return ""


class Step(object):
    """Turns ``docker build`` output into progress lines: one for each RUN, COPY or ADD step
    that does not come from the layer cache, as ``build: IMAGE step N: INSTRUCTION (S s)``."""

    def __init__(self, image: str, start: float) -> None:
        self.image = image
        self.start = start
        self.pending = ""
        self.number = ""

    def feed(self, line: str) -> Optional[str]:
        """The progress line for one line of docker build's output, if any."""
        if line.startswith("Step "):
            self.pending = line
            self.number = line[len("Step ") :].split(" :", 1)[0]
            return None
        if not self.pending:
            return None
        instruction = self.pending.split(" : ", 1)[1] if " : " in self.pending else ""
        self.pending = ""
        if line != " ---> Using cache" and re.match(r"(RUN|COPY|ADD)", instruction):
            return (
                f"build: {self.image} step {self.number}: {instruction[:60]} "
                f"({int(time.monotonic() - self.start)} s)"
            )
        return None


# The classic builder's deprecation notice is not the error: left out of the tail shown
_NOTICE = re.compile(
    r"^(DEPRECATED: The legacy builder| *BuildKit| *Install the buildx"
    r"| *https://| *deprecated|$)"
)


def _git(*args: str) -> str:
    return output(["git", *args]) or ""


def build_one(
    name: str,
    settings: Mapping[str, str],
    project: str,
    origin: str,
    service: str = "",
    user: Sequence[str] = (),
) -> None:
    """Build one image: a shared one (``name``) or, with ``service``, the project's own on
    that shared image. Labels name its source revision (the last commit of its own files, so
    they change only with the image and never break the cache of the images above).

    Raises:
        Failure: the build failed; its log's tail is shown above the line.
    """
    start = time.monotonic()
    worker = service == "scheduler"
    if worker:
        # The project's runner with the engine's venv copied in (images/scheduler/worker.Dockerfile)
        parent = f"{project}-bash:{settings['MLSTACK_VERSION']}"
        image = f"{project}-scheduler:{settings['MLSTACK_VERSION']}"
        dockerfile = "images/scheduler/worker.Dockerfile"
        inputs = ["images/scheduler", "images/project", "project/requirements.txt"]
        extra = ["--label", f"mlstack.project={project}"]
        extra += ["--build-arg", f"SCHEDULER_IMAGE={envfile.stack_image('scheduler', settings)}"]
    elif service:
        parent = envfile.stack_image(service, settings)
        image = f"{project}-{service}:{settings['MLSTACK_VERSION']}"
        dockerfile = "images/project/Dockerfile"
        inputs = ["images/project", "project/requirements.txt", "project/wheels"]
        # make clean finds this project's older images by it
        extra = ["--label", f"mlstack.project={project}"]
        # The host user's entry in the image (images/project/add-host-user)
        extra += user
    else:
        parents = CHAIN[name]
        parent = envfile.stack_image(parents[0], settings) if parents else settings["BASE_IMAGE"]
        image = envfile.stack_image(name, settings)
        dockerfile = f"images/{name}/Dockerfile"
        inputs = [f"images/{name}"]
        extra = ["--tag", f"{settings['MLSTACK_IMAGE_PREFIX']}/{name}:latest"]
    revision = _git("log", "-1", "--format=%H", "--", *inputs)
    created = _git("log", "-1", "--format=%cI", "--", *inputs)
    if _git("status", "--porcelain", "--", *inputs):
        revision = (revision or "uncommitted") + "-dirty"
    # A shared image of the same name seeds the cache: the classic builder reuses only layers of
    # images it built itself, not of images restored with `docker load` (CI's cache). Not for
    # the project's images: --cache-from limits the cache to that one image
    if not service and output(["docker", "image", "inspect", image]) is not None:
        extra += ["--cache-from", image]
    log = ROOT / ".build" / "logs" / (re.sub(r"[/:]", "_", image) + ".log")
    say(f"build: {image} (FROM {parent})")
    labels = {
        "org.opencontainers.image.title": image.rsplit(":", 1)[0],
        "org.opencontainers.image.version": settings["MLSTACK_VERSION"],
        "org.opencontainers.image.revision": revision or "unknown",
        "org.opencontainers.image.created": created or "unknown",
        "org.opencontainers.image.base.name": parent,
    }
    # Only the project's own images name its repository: on a shared image, two clones with
    # different origins would relabel (and so rebuild) the whole shared chain
    if service:
        labels["org.opencontainers.image.source"] = source_url(origin) or "unknown"
    command = ["docker", "build", "--force-rm", *extra, "--file", dockerfile]
    command += ["--build-arg", f"BASE_IMAGE={parent}", "--tag", image]
    # The stack's packages take the stack's version (images/project, images/mlflow)
    command += ["--build-arg", f"MLSTACK_VERSION={settings['MLSTACK_VERSION']}"]
    for key, value in labels.items():
        command += ["--label", f"{key}={value}"]
    command.append(".")
    steps = Step(image, start)
    with open(log, "w") as record:
        process = subprocess.Popen(
            command, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def read() -> None:
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=15)
            except queue.Empty:
                say(
                    f"build: {image} step {steps.number} still running, "
                    f"{int(time.monotonic() - start)} s"
                )
                continue
            if line is None:
                break
            record.write(line)
            shown = steps.feed(line.rstrip("\n"))
            if shown:
                say(shown)
        process.wait()
    if process.returncode != 0:
        tail = [line for line in log.read_text().splitlines() if not _NOTICE.match(line)]
        for line in tail[-25:]:
            say(line, err=True)
        raise Failure(
            f"building {image} failed (above; whole log in {log.relative_to(ROOT)}); behind a "
            "TLS-intercepting proxy, set EXTRA_CA_CERTS to its CA bundle (see "
            "docs/operations.md)"
        )
    say(f"build: {image} ready in {int(time.monotonic() - start)} s")


def copy_certificates(extra: str, build_base: bool, settings: Mapping[str, str]) -> None:
    """Put the extra CA certificates into the build context (.build/ca-certificates), where
    base's Dockerfile adds them to the trust store: ``extra`` is a PEM file or a folder of
    .crt/.pem files; empty keeps the certificates the existing base image has, so a shell
    without the setting never rebuilds a working base without them.

    Raises:
        Failure: ``extra`` is neither a file nor a folder (status 2).
    """
    folder = ROOT / ".build" / "ca-certificates"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (ROOT / ".build" / "logs").mkdir(exist_ok=True)
    if extra:
        path = Path(extra)
        if path.is_file():
            shutil.copyfile(path, folder / "extra.crt")
        elif path.is_dir():
            for each in sorted(path.iterdir()):
                if each.is_file() and each.suffix in (".crt", ".pem"):
                    shutil.copyfile(each, folder / (each.stem + ".crt"))
        else:
            raise Failure(f"EXTRA_CA_CERTS={extra} is neither a file nor a folder", status=2)
        return
    base = envfile.stack_image("base", settings)
    if build_base and output(["docker", "image", "inspect", base]) is not None:
        container = output(["docker", "create", base])
        if container:
            run(
                [
                    "docker",
                    "cp",
                    "--quiet",
                    f"{container}:/usr/local/share/ca-certificates/.",
                    str(folder) + "/",
                ],
                check=False,
            )
            run(["docker", "rm", container], quiet=True, check=False)


def build(names: Sequence[str], environ: Mapping[str, str]) -> None:
    """Build the images ``names`` ask for (see :func:`wanted`) with their ancestors, level by
    level, siblings side by side; one build at a time per project folder.

    Raises:
        Failure: an unknown image, no project name for the project's images, a failed build.
    """
    from stackctl import base_image

    env = envfile.EnvFile.load()
    settings = envfile.image_settings(environ)
    compose_files = environ.get("COMPOSE_FILE") or env.get("COMPOSE_FILE")
    chosen = wanted(names, compose_files, envfile.scheduled(environ))
    project = environ.get("COMPOSE_PROJECT_NAME") or env.get("COMPOSE_PROJECT_NAME")
    if "project" in chosen and not project:
        raise Failure(
            "no compose project name for the project's images; run 'make build' (it writes "
            ".env)",
            status=2,
        )
    (ROOT / ".build").mkdir(exist_ok=True)
    # One build at a time per project folder: builds share .build/ (the certificates)
    with open(ROOT / ".build" / "build.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        copy_certificates(
            environ.get("EXTRA_CA_CERTS") or env.get("EXTRA_CA_CERTS"), "base" in chosen, settings
        )
        if "base" in chosen:
            base_image.ensure(settings["BASE_IMAGE"])
        origin = _git("config", "--get", "remote.origin.url")
        for names_of_level in levels():
            jobs = []
            for name in names_of_level:
                if name not in chosen:
                    continue
                if name == "project":
                    jobs += [("project", service) for service in PROJECT_SERVICES]
                else:
                    jobs.append((name, ""))
            failures: List[Failure] = []

            def one(name: str, service: str) -> None:
                try:
                    build_one(name, settings, project, origin, service, host_user(env))
                except Failure as failure:
                    failures.append(failure)

            threads = [threading.Thread(target=one, args=job) for job in jobs]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if failures:
                raise failures[0]
        # Last, on the project's runner image: the project's scheduler worker
        if "scheduler" in chosen and "project" in chosen:
            build_one("project", settings, project, origin, "scheduler")


def host_user(env: "envfile.EnvFile") -> List[str]:
    """The build arguments that give the project's images an entry for the host user, from
    .env (``MLSTACK_UID``, ``MLSTACK_GID``, ``MLSTACK_USER``: what compose runs them as); those
    .env lacks keep the Dockerfile's defaults."""
    arguments: List[str] = []
    for key in ("MLSTACK_UID", "MLSTACK_GID", "MLSTACK_USER"):
        if env.get(key):
            arguments += ["--build-arg", f"{key}={env.get(key)}"]
    return arguments


def group(name: str) -> Tuple[str, ...]:
    """A group's image names in build order.

    Raises:
        Failure: no such group (status 2).
    """
    if name not in GROUPS:
        raise Failure(f"no image group '{name}'; groups: {' '.join(GROUPS)}", status=2)
    return GROUPS[name]
