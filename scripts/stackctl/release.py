"""A model's production image (``make release``) and pushing images to a registry
(``make push``)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Sequence, Tuple

from stackctl import envfile
from stackctl.envfile import EnvFile
from stackctl.proc import PROJECT, ROOT, RUNTIME, Failure, compose, docker, output, run, say

_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*$")


def registry_address(registry: str) -> Tuple[str, int]:
    """The host and port a registry reference is reached at (443 when it names none).

    Raises:
        Failure: empty, or not host[:port][/namespace] (status 2).
    """
    if not registry:
        raise Failure(
            "no registry given; name the one the swarm's nodes pull from, e.g. make push "
            "REGISTRY=127.0.0.1:5000 (none yet? docs/swarm.md)",
            status=2,
        )
    if not _REGISTRY.match(registry):
        raise Failure(
            f"REGISTRY={registry} is not host:port (or host[:port]/namespace); give it without "
            "scheme, e.g. make push REGISTRY=127.0.0.1:5000",
            status=2,
        )
    address = registry.split("/", 1)[0]
    host, _, port = address.partition(":")
    return host, int(port) if port else 443


def push_advice(message: str, registry: str) -> str:
    """What to do about a failed ``docker push``, from Docker's message."""
    if "HTTP response to HTTPS client" in message:
        return (
            "the registry speaks plain HTTP: add it to insecure-registries in "
            "/etc/docker/daemon.json on this machine and every node (only for a lab registry), "
            "or give it TLS"
        )
    if "x509" in message or "certificate" in message:
        return (
            "Docker does not trust the registry's certificate: put its CA in "
            f"/etc/docker/certs.d/{registry}/ca.crt on this machine and every node"
        )
    if any(
        word in message
        for word in ("unauthorized", "authentication required", "no basic auth", "denied")
    ):
        return f"the registry wants a login: run 'docker login {registry}', then make push again"
    return "see Docker's message above"


def push(registry: str, references: Sequence[str] = ()) -> None:
    """Tag and push images as REGISTRY/<local reference>: by default this project's own and
    the stack's MLflow image (what a swarm runs), and the scheduler's two with the scheduled jobs
    on.

    Raises:
        Failure: a bad registry, none answering there, or a push refused (with the advice).
    """
    host, port = registry_address(registry)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError:
        raise Failure(
            f"no registry answers at {registry}; start one (docs/swarm.md) or check the host "
            "and port in REGISTRY"
        )
    if not references:
        env = EnvFile.load()
        name, version = env.get("COMPOSE_PROJECT_NAME"), env.get("MLSTACK_VERSION")
        references = [
            f"{name}-jupyter:{version}",
            f"{name}-bash:{version}",
            envfile.stack_image("mlflow"),
        ]
        if envfile.scheduled():
            # The scheduling engine and the project's worker (make swarm-up SCHEDULE=1)
            references += [f"{name}-scheduler:{version}", envfile.stack_image("scheduler")]
    for image in references:
        target = f"{registry}/{image}"
        docker("tag", image, target)
        say(f"push: {target}")
        pushed = run(["docker", "push", "--quiet", target], check=False, capture=True)
        if pushed.returncode != 0:
            text = pushed.stdout + pushed.stderr
            for line in text.strip().splitlines()[-3:]:
                say(line, err=True)
            raise Failure(
                f"pushing {target} failed; {push_advice(text, registry)} " "(docs/swarm.md)"
            )
    say(f"push: {len(references)} images in {registry}")


def push_command(argv: Sequence[str] = ()) -> None:
    """``make push REGISTRY=...``: see :func:`push`."""
    push(argv[0] if argv else "", argv[1:])


def read_release(path: Path) -> dict:
    """The KEY=value lines mlstack.release wrote (IMAGE_SUFFIX, MODEL_NAME, ...)."""
    return envfile.parse(path.read_text())


def release(argv: Sequence[str] = ()) -> None:
    """Build the production image of one model on the stack's base image, check that it serves
    the model's input example, print its reference last (pushed too with REGISTRY).

    Raises:
        Failure: no model given (status 2), the build failed, or the image does not serve.
    """
    model = argv[0] if argv else ""
    registry = argv[1] if len(argv) > 1 else ""
    platforms = os.environ.get("PLATFORMS", "")
    if not model:
        raise Failure(
            "say which model to release: make release MODEL=models:/<name>/<version> (or "
            "models:/<name>@<alias>, runs:/<run id>/model)",
            status=2,
        )
    env = EnvFile.load()
    settings = envfile.image_settings()
    # Under the project's folder: the runner writes the model's files there and sees only it.
    RUNTIME.mkdir(parents=True, exist_ok=True)
    context = Path(tempfile.mkdtemp(prefix="release.", dir=str(RUNTIME)))
    container = ""
    try:
        # The runner writes into it as the project's UID, which owns it also under root
        if os.getuid() == 0:
            os.chown(str(context), int(env.get("MLSTACK_UID")), int(env.get("MLSTACK_GID")))
        # Elsewhere than the stack's own server: no local server, credentials passed by name
        remote: List[str] = []
        environ = dict(os.environ)
        if environ.get("MLSTACK_RELEASE_TRACKING_URI"):
            environ["MLFLOW_TRACKING_URI"] = environ["MLSTACK_RELEASE_TRACKING_URI"]
            remote = ["--no-deps", "-e", "MLFLOW_TRACKING_URI"]
            for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                if environ.get(key):
                    remote += ["-e", key]
        relative = context.relative_to(PROJECT)
        compose(
            "run",
            "--rm",
            "-T",
            *remote,
            "-e",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false",
            "bash",
            "python",
            "-m",
            "mlstack.release",
            model,
            f"/project/{relative}",
            env=environ,
        )
        found = read_release(context / "release.env")
        image = f"{env.get('COMPOSE_PROJECT_NAME')}-{found['IMAGE_SUFFIX']}"
        shutil.copyfile(ROOT / "images/science/requirements.lock", context / "constraints.txt")
        shutil.copytree(ROOT / "images/project/mlstack", context / "mlstack")
        # Versioned as the stack, as the project's images install it
        package = context / "mlstack" / "pyproject.toml"
        package.write_text(
            re.sub(r'^version = .*$', f'version = "{settings["MLSTACK_VERSION"]}"',
                   package.read_text(), flags=re.M)
        )  # fmt: skip
        base = envfile.stack_image("base", settings)
        # Where a prediction comes from, for `docker inspect`
        labels = {
            "org.opencontainers.image.title": image.rsplit(":", 1)[0],
            "org.opencontainers.image.version": found.get("MODEL_VERSION")
            or image.rsplit(":", 1)[-1],
            "org.opencontainers.image.revision": found.get("GIT_COMMIT", ""),
            "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "org.opencontainers.image.base.name": base,
            "mlstack.model.name": found.get("MODEL_NAME", ""),
            "mlstack.model.version": found.get("MODEL_VERSION", ""),
            "mlstack.model.uri": found.get("MODEL_URI", ""),
            "mlstack.model.run_id": found.get("RUN_ID", ""),
            "mlstack.model.git_commit": found.get("GIT_COMMIT", ""),
            "mlstack.version": settings["MLSTACK_VERSION"],
        }
        label_args = [
            part for key, value in labels.items() for part in ("--label", f"{key}={value}")
        ]
        say(f"release: building {image}")
        (ROOT / ".build" / "logs").mkdir(exist_ok=True)
        log = ROOT / ".build" / "logs" / ("release-" + re.sub(r"[/:]", "_", image) + ".log")
        with open(log, "w") as record:
            built = run(
                [
                    "docker",
                    "build",
                    "--force-rm",
                    "--file",
                    "images/release/Dockerfile",
                    "--build-arg",
                    f"BASE_IMAGE={base}",
                    *label_args,
                    "--tag",
                    image,
                    str(context),
                ],
                check=False,
                stdout=record,
            )
        if built.returncode != 0:
            for line in log.read_text().splitlines()[-20:]:
                say(line, err=True)
            raise Failure(
                f"building {image} failed (above; whole log in {log.relative_to(ROOT)}); behind "
                "a TLS-intercepting proxy, set EXTRA_CA_CERTS (docs/operations.md)"
            )
        # The image as it ships (read-only, no network but the port) answers /ping and
        # predicts the model's input example
        container = docker(
            "run",
            "--detach",
            "--rm",
            "--read-only",
            "--publish",
            "127.0.0.1::8080",
            image,
            capture=True,
        ).stdout.strip()
        if (
            docker(
                "exec", container, "python", "-m", "mlstack.serving", "smoke", check=False
            ).returncode
            != 0
        ):
            run(["docker", "logs", "--tail", "20", container], check=False, stdout=sys.stderr)
            raise Failure(f"{image} was built but does not serve its model (logs above)")
        docker("stop", container, quiet=True)
        container = ""
        if registry:
            # Also tagged with this repository's commit, which a version alone does not say
            tags = [image]
            commit = output(["git", "rev-parse", "--short=12", "HEAD"])
            if commit:
                tags.append(f"{image}-{commit}")
            if platforms:
                # buildx's builders do not see local images: the base goes to the registry
                # for each platform first, then the release is built on it
                remote_base = f"{registry}/{base}"
                docker(
                    "buildx",
                    "build",
                    "--platform",
                    platforms,
                    "--file",
                    "images/base/Dockerfile",
                    "--build-arg",
                    f"BASE_IMAGE={settings['BASE_IMAGE']}",
                    "--tag",
                    remote_base,
                    "--push",
                    ".",
                )
                docker(
                    "buildx",
                    "build",
                    "--platform",
                    platforms,
                    "--file",
                    "images/release/Dockerfile",
                    "--build-arg",
                    f"BASE_IMAGE={remote_base}",
                    *label_args,
                    *(f"--tag={registry}/{tag}" for tag in tags),
                    "--push",
                    str(context),
                )
            else:
                if len(tags) > 1:
                    docker("tag", image, tags[1])
                # The last line of stdout is the image's name: push's lines go to stderr
                with contextlib.redirect_stdout(sys.stderr):
                    push(registry, tags)
            image = f"{registry}/{image}"
        say(image)
    finally:
        if container:
            run(["docker", "stop", container], check=False, quiet=True)
        shutil.rmtree(context, ignore_errors=True)
