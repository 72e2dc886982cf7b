"""The host commands make runs, a function each (``python3 scripts/stackctl COMMAND ...``). Each
says what it does in one line per step and fails with one ``error: ...`` line (stderr) saying
what is wrong and what to do; exit status 2 for a wrong argument, 1 otherwise."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Sequence

from stackctl import envfile, images, modes, ports, project
from stackctl.envfile import EnvFile
from stackctl.proc import ROOT, RUNTIME, Failure, compose, output, run, say

# docker compose up --wait (and its timeout), depends_on conditions honoured by `run`
MIN_COMPOSE = (2, 20, 0)
# Jobs read the host URLs here (run links; whether a cluster is expected); no token in it
URLS_FILE = RUNTIME / "urls.env"
DASK_FILE = RUNTIME / "dask.yaml"


def env_command(argv: Sequence[str] = ()) -> None:
    """Create or complete .env (see :func:`stackctl.envfile.complete`), give each published
    service a port once, save it with mode 600. ``--secrets`` prints the secrets' names."""
    if list(argv) == ["--secrets"]:
        say(" ".join(envfile.SECRETS))
        return
    env = EnvFile.load()
    created = not env.path.exists()
    if created:
        env.lines = [envfile.HEADER.rstrip("\n")]
    said = envfile.complete(env, os.environ, ROOT.name)
    moved = ports.assign(env, os.environ, check=False, owner=_published_address)
    env.save()
    if created:
        say("env: wrote .env", err=True)
    for line in said:
        say(line, err=True)
    for line in moved:
        say(line)


def _published_address(service: str, container_port: int) -> Optional[str]:
    return output(["docker", "compose", "--profile", "*", "port", service, str(container_port)])


def check_ports() -> None:
    """At a start: each remembered port free or ours already, else moved (one line each)."""
    env = EnvFile.load()
    moved = ports.assign(env, os.environ, check=True, owner=_published_address)
    if moved:
        env.save()
    for line in moved:
        say(line)


def compose_version(text: str) -> tuple:
    """``docker compose version --short``'s answer as numbers: ``v2.29.1`` -> (2, 29, 1)."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def docker_problem(stderr: str) -> str:
    """The one line for a failed ``docker info``, from its error output: a socket the user may
    not use (not in the docker group), or a daemon that does not answer."""
    if "permission denied" in stderr.lower():
        return (
            "this user may not use the Docker daemon (permission denied on its socket); add "
            "yourself to the docker group (sudo usermod -aG docker $USER, then log in again) "
            "or use Docker Desktop, and run make again"
        )
    return (
        "the Docker daemon is not reachable; start Docker (or check DOCKER_HOST) and run make "
        "again"
    )


def preflight(argv: Sequence[str] = ()) -> None:
    """Docker usable before make does anything with it: the client, the daemon, Compose v2 and
    recent enough; with ``config``, the compose configuration with .env valid.

    Raises:
        Failure: the first of those that does not hold, with what to do.
    """
    if not shutil.which("docker"):
        raise Failure(
            "docker is not installed; install Docker Engine >= 20.10 with the Compose v2 plugin"
        )
    info = run(["docker", "info"], check=False, capture=True)
    if info.returncode != 0:
        raise Failure(docker_problem(info.stderr))
    version = output(["docker", "compose", "version", "--short"])
    minimum = ".".join(map(str, MIN_COMPOSE))
    if version is None:
        if shutil.which("docker-compose"):
            raise Failure(
                "only Compose v1 ('docker-compose') is installed; install the Compose v2 plugin "
                f"('docker compose'), {minimum} or newer"
            )
        raise Failure(
            f"Compose v2 ('docker compose') is missing; install the Compose plugin, {minimum} "
            "or newer"
        )
    if compose_version(version) < MIN_COMPOSE:
        raise Failure(f"Compose {version.lstrip('v')} is too old; install {minimum} or newer")
    if list(argv) != ["config"] or not (ROOT / ".env").exists():
        return
    checked = compose("--profile", "*", "config", "--quiet", check=False, capture=True)
    if checked.returncode != 0:
        problem = (checked.stderr + checked.stdout).strip().splitlines() or [""]
        raise Failure(
            "the stack's settings are invalid, fix .env or env/ (see .env.example): " + problem[0]
        )


def gpu_problem(files: str, runtimes: Optional[str]) -> Optional[str]:
    """The one line refusing GPU mode, or None: ``files`` (a COMPOSE_FILE value) asks for
    NVIDIA GPUs and ``runtimes`` (``docker info``'s JSON of .Runtimes; None when it failed)
    names no nvidia runtime, so Docker would refuse every container that reserves a GPU."""
    if modes.GPU_FILE not in files.split(":") or "nvidia" in (runtimes or ""):
        return None
    return (
        "GPU=1 needs the NVIDIA Container Toolkit, and this Docker has no nvidia runtime "
        "(docker info); install the toolkit and restart Docker, or run make up GPU=0"
    )


def gpu_check(argv: Sequence[str] = ()) -> None:
    """Before make up builds or starts anything: GPU mode only where Docker has the NVIDIA
    runtime. A GPU=1 given now is taken back out of .env, so the next make up works.

    Raises:
        Failure: :func:`gpu_problem`'s line.
    """
    env = EnvFile.load()
    files = envfile.active_files()
    runtimes = output(["docker", "info", "--format", "{{json .Runtimes}}"])
    problem = gpu_problem(files, runtimes)
    if problem is None:
        return
    if os.environ.get("GPU") == "1":
        env.set("COMPOSE_FILE", modes.compose_files(env.get("COMPOSE_FILE"), gpu="0"))
        env.save()
    raise Failure(problem)


def workers_count(text: str, minimum: int = 0, command: str = "make up") -> int:
    """The number of Dask workers from ``WORKERS`` (empty: ``minimum``).

    Raises:
        Failure: not a whole number >= ``minimum`` (status 2).
    """
    if text == "":
        return minimum
    if not text.isdigit() or int(text) < minimum:
        if minimum:
            raise Failure(
                f"WORKERS={text} is not a number of Dask workers >= {minimum}; use "
                f"{command} WORKERS=2"
            )
        raise Failure(
            f"WORKERS={text} is not a number of Dask workers; use make up WORKERS=2, or make up "
            "for none",
            status=2,
        )
    return int(text)


def up(argv: Sequence[str] = ()) -> None:
    """Start mlflow and jupyter (built by make first), wait until healthy, print the URLs; with
    WORKERS >= 1 a Dask scheduler and that many workers too (none: their containers go).

    Raises:
        Failure: a bad WORKERS, or a service not healthy in time (its logs shown above).
    """
    workers = workers_count(argv[0] if argv else "")
    files = envfile.active_files()
    member = modes.is_member(files)
    # A member's clone logs to the shared server: no local one (its volume stays)
    services = ["jupyter"] if member else ["mlflow", "jupyter"]
    if member:
        compose("rm", "--stop", "--force", "mlflow", check=False, quiet=True)
        from stackctl.join import write_ca_bundle

        env = EnvFile.load()
        write_ca_bundle(f"{env.get('COMPOSE_PROJECT_NAME')}-bash:{env.get('MLSTACK_VERSION')}")
    scheduled = envfile.scheduled()
    if scheduled:
        services += ["scheduler", "scheduler-worker"]
    else:
        # Scheduled jobs off: their engine and worker go (the engine's volume stays)
        compose(
            "--profile", modes.SCHEDULE_PROFILE, "rm", "--stop", "--force", "scheduler",
            "scheduler-worker", check=False, quiet=True,
        )  # fmt: skip
    options: List[str] = []
    if workers > 0:
        services += ["dask-scheduler", "dask-worker"]
        options = ["--scale", f"dask-worker={workers}"]
    else:
        # No cluster: nothing of it left to cost memory (its spill volume stays)
        compose(
            "--profile",
            "dask",
            "rm",
            "--stop",
            "--force",
            "dask-scheduler",
            "dask-worker",
            check=False,
            quiet=True,
        )
    # 3 minutes, or 15 in team mode, whose first start migrates a new PostgreSQL database
    wait = os.environ.get("MLSTACK_UP_TIMEOUT") or ("900" if modes.is_team(files) else "180")
    check_ports()
    # --remove-orphans: after a switch of mode the other mode's services go; volumes stay
    started = compose(
        "--profile",
        "dask",
        "up",
        "--detach",
        "--wait",
        "--wait-timeout",
        wait,
        "--remove-orphans",
        *options,
        *services,
        check=False,
    )
    if started.returncode == 0:
        urls()
        space = None if member else store_space(modes.is_team(files))
        if space:
            say(space)
        if scheduled:
            from stackctl import schedules

            schedules.apply()
        return
    for service in services:
        ids = (
            output(["docker", "compose", "--profile", "*", "ps", "--all", "--quiet", service]) or ""
        )
        if not ids.split():
            say(f"error: service {service} was not created; see the messages above", err=True)
            continue
        for container in ids.split():
            state = (
                output(
                    [
                        "docker",
                        "inspect",
                        "--format",
                        "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                        container,
                    ]
                )
                or "not created"
            )
            if state != "running healthy":
                say(f"---- last logs of {service} ----", err=True)
                compose(
                    "--profile",
                    "dask",
                    "logs",
                    "--no-color",
                    "--tail",
                    "40",
                    service,
                    check=False,
                    stdout=sys.stderr,
                )
                say(
                    f"error: service {service} is not healthy ({state.strip()}); see 'make "
                    "logs'",
                    err=True,
                )
                break
    raise Failure("", status=1)


def _url_of(service: str, port: int) -> str:
    address = output(["docker", "compose", "--profile", "*", "port", service, str(port)])
    return f"http://{address}" if address else ""


def dask_config(dashboard: str) -> str:
    """Dask's settings for the containers (DASK_CONFIG): the dashboard link a client shows is
    then the host's URL."""
    return f'distributed:\n  dashboard:\n    link: "{dashboard}/status"\n'


# In the store's container (Debian's coreutils): bytes under /data, then bytes free on its disk
SPACE = "du -sb /data | cut -f1; df -B1 --output=avail /data | tail -n 1"


def space_line(volume: str, answer: str) -> Optional[str]:
    """The `make up` summary's line on the active store from :data:`SPACE`'s ``answer`` (two
    byte counts), or None when it is not two numbers."""
    from stackctl.store import human

    numbers = answer.split()
    if len(numbers) != 2 or not all(number.isdigit() for number in numbers):
        return None
    used, free = (int(number) for number in numbers)
    return f"Store:   {volume} holds {human(used)}B; {human(free)}B free on its disk"


def store_space(team: bool) -> Optional[str]:
    """The line on the active mode's artifact store (:func:`stackctl.store.artifact_store`):
    what it holds and what its disk has free; None when not answered."""
    from stackctl.store import artifact_store

    service, volume = artifact_store(team)
    return space_line(
        volume, output(["docker", "compose", "exec", "-T", service, "sh", "-c", SPACE]) or ""
    )


def urls(argv: Sequence[str] = ()) -> None:
    """Print the host URLs of MLflow, Jupyter and (with a cluster) the Dask dashboard; save the
    MLflow and dashboard ones in project/.mlstack/ for the jobs (no token there).

    Raises:
        Failure: the mlflow service is not running.
    """
    env = EnvFile.load()
    files = envfile.active_files()
    # A member's clone: the shared server's URL, also in the run links jobs print
    mlflow_url = (modes.is_member(files) and env.get("MLSTACK_TEAM_URL")) or _url_of("mlflow", 5000)
    if not mlflow_url:
        raise Failure("the mlflow service is not running; start the stack with 'make up'")
    jupyter = _url_of("jupyter", 8888)
    dask = _url_of("dask-scheduler", 8787)
    scheduler = _url_of("scheduler", 4200)
    URLS_FILE.parent.mkdir(parents=True, exist_ok=True)
    lines = f"MLSTACK_MLFLOW_URL={mlflow_url}\n"
    if DASK_FILE.exists():
        DASK_FILE.unlink()
    if scheduler:
        lines += f"MLSTACK_SCHEDULER_URL={scheduler}\n"
    if dask:
        lines += f"MLSTACK_DASK_DASHBOARD_URL={dask}\n"
        DASK_FILE.write_text(dask_config(dask))
    URLS_FILE.write_text(lines)
    say(f"MLflow:  {mlflow_url}")
    token = EnvFile.load().get("JUPYTER_TOKEN")
    say("Jupyter: " + (f"{jupyter}/lab?token={token}" if jupyter else "not running (make up)"))
    if scheduler:
        say(
            f"Schedules: {scheduler} (its login: MLSTACK_SCHEDULER_AUTH in .env, admin:...; "
            "make schedules lists the jobs)"
        )
    if dask:
        running = (
            output(
                [
                    "docker",
                    "compose",
                    "--profile",
                    "dask",
                    "ps",
                    "--quiet",
                    "--status",
                    "running",
                    "dask-worker",
                ]
            )
            or ""
        )
        say(
            f"Dask:    {dask}/status ({len(running.split())} workers; Client() connects in "
            "Jupyter and the runner)"
        )


def down(argv: Sequence[str] = ()) -> None:
    """Stop and remove the containers of every profile; the data volumes stay."""
    compose("--profile", "*", "down", "--remove-orphans")
    for path in (URLS_FILE, DASK_FILE):
        if path.exists():
            path.unlink()


def build(argv: Sequence[str] = ()) -> None:
    """Build the images asked for (:func:`stackctl.images.wanted`); ``--list GROUP`` prints a
    group's image names instead (the tests and CI read them so), ``--tree`` the chain."""
    if argv and argv[0] == "--list":
        say(" ".join(images.group(argv[1] if len(argv) > 1 else "")))
        return
    if argv and argv[0] == "--tree":
        say("\n".join(images.tree(envfile.image_settings()["BASE_IMAGE"])))
        return
    images.build(argv, os.environ)


def clean(argv: Sequence[str] = ()) -> None:
    """Remove the project's containers and networks (never the MLflow data), the scratch
    volumes (Dask's spill, the tracking server's staging), this project's old images (the
    current ones stay) and the build leftovers."""
    compose("--profile", "*", "down", "--remove-orphans")
    env = EnvFile.load()
    name = env.get("COMPOSE_PROJECT_NAME")
    for scratch in ("dask-spill", "mlflow-staging"):
        run(["docker", "volume", "rm", f"{name}_{scratch}"], check=False, quiet=True)
    version = env.get("MLSTACK_VERSION")
    current = set()
    for service in images.PROJECT_SERVICES:
        found = output(
            ["docker", "image", "inspect", "--format", "{{.Id}}", f"{name}-{service}:{version}"]
        )
        if found:
            current.add(found)
    listed = (
        output(
            [
                "docker",
                "image",
                "ls",
                "--no-trunc",
                "--filter",
                f"label=mlstack.project={name}",
                "--format",
                "{{.ID}} {{.Repository}}:{{.Tag}}",
            ]
        )
        or ""
    )
    removed = 0
    for line in listed.splitlines():
        image_id, reference = line.split(" ", 1)
        if image_id in current:
            continue
        if (
            run(["docker", "image", "rm", "--force", image_id], check=False, quiet=True).returncode
            == 0
        ):
            if reference == "<none>:<none>":
                reference = f"{image_id[7:19]} (untagged)"
            say(f"clean: removed old image {reference}")
            removed += 1
    say(
        f"clean: {removed} old image(s) of project {name} removed; the current ones and the "
        "stack's shared images are kept"
    )
    for folder in (ROOT / ".build", ROOT / ".mlstack", RUNTIME, ROOT / ".pytest_cache"):
        shutil.rmtree(folder, ignore_errors=True)
    for cache in ROOT.rglob("__pycache__"):
        if ".venv" not in cache.relative_to(ROOT).parts:
            shutil.rmtree(cache, ignore_errors=True)


def check(argv: Sequence[str] = ()) -> None:
    """The project's own checks in the runner (its pinned black and pytest, no tracking server):
    black --check on the project folder, then its tests (both with project/pyproject.toml's
    settings)."""
    compose(
        "run",
        "--rm",
        "--no-deps",
        "bash",
        "bash",
        "-c",
        "black --check . && python -m pytest --quiet",
    )
    say("check: black and the project's tests passed")


def make(*targets: str) -> subprocess.CompletedProcess:
    """Run this folder's make (the one running us: MAKE from the environment) with targets."""
    return run([os.environ.get("MAKE", "make"), "--no-print-directory", *targets], check=False)


def smoke(argv: Sequence[str] = ()) -> None:
    """The stack's smoke test: make up, one job of the stack's own (a run logged and read back),
    then make down when the stack was not running before."""
    was_running = output(["docker", "compose", "ps", "--quiet", "--status", "running", "mlflow"])
    try:
        if make("up").returncode != 0:
            raise Failure("", status=2)
        compose("run", "--rm", "bash", "python", "-m", "mlstack.smoke")
        say("smoke: passed")
    finally:
        if not was_running:
            run(
                [os.environ.get("MAKE", "make"), "--no-print-directory", "down"],
                check=False,
                quiet=True,
            )


def serve(argv: Sequence[str] = ()) -> None:
    """Serve a logged model (``mlflow models serve`` in the runner image) on a loopback port,
    wait until it answers and print its URL.

    Raises:
        Failure: no model given (status 2), or it could not be served (logs above).
    """
    model = argv[0] if argv else ""
    if not model:
        raise Failure(
            "say which model to serve: make serve MODEL=models:/<name>/<version> (or "
            "runs:/<run id>/model)",
            status=2,
        )
    # compose.yaml reads the model URI from here; the service is recreated when it changes
    environ = dict(os.environ, MLSTACK_SERVE_MODEL=model)
    started = compose(
        "--profile",
        "serve",
        "up",
        "--detach",
        "--wait",
        "--wait-timeout",
        "300",
        "serve",
        check=False,
        env=environ,
    )
    if started.returncode != 0:
        compose(
            "logs",
            "--no-color",
            "--tail",
            "20",
            "serve",
            check=False,
            stdout=sys.stderr,
            env=environ,
        )
        raise Failure(
            f"the model {model} could not be served (logs above); check the URI with the "
            "MLflow UI"
        )
    address = output(["docker", "compose", "port", "serve", "8080"], env=environ)
    say(f"Serving {model}: POST to http://{address}/invocations")


def free_port(argv: Sequence[str] = ()) -> None:
    """Print a free loopback port (make docs serves the manual there)."""
    say(str(ports.free_port()))


def secrets_names(argv: Sequence[str] = ()) -> None:
    """Print the names of the secrets make keeps in .env."""
    say(" ".join(envfile.SECRETS))


def _lazy(module: str, function: str) -> Callable[[Sequence[str]], None]:
    def command(argv: Sequence[str]) -> None:
        imported = __import__(f"stackctl.{module}", fromlist=[function])
        getattr(imported, function)(argv)

    return command


COMMANDS: Dict[str, Callable[[Sequence[str]], None]] = {
    "env": env_command,
    "preflight": preflight,
    "gpu-check": gpu_check,
    "ports": lambda argv: check_ports(),
    "up": up,
    "down": down,
    "urls": urls,
    "build": build,
    "clean": clean,
    "check": check,
    "smoke": smoke,
    "serve": serve,
    "free-port": free_port,
    "backup": _lazy("commands", "backup"),
    "restore": _lazy("commands", "restore"),
    "destroy": _lazy("commands", "destroy"),
    "migrate-store": _lazy("commands", "migrate"),
    "gc": _lazy("commands", "gc"),
    "release": _lazy("release", "release"),
    "push": _lazy("release", "push_command"),
    "join": _lazy("join", "join"),
    "leave": _lazy("join", "leave"),
    "users": _lazy("users", "users"),
    "user-add": _lazy("users", "add"),
    "user-remove": _lazy("users", "remove"),
    "user-reset": _lazy("users", "reset"),
    "user-grant": _lazy("users", "grant"),
    "schedules": _lazy("schedules", "schedules"),
    "schedule-run": _lazy("schedules", "run_now"),
    "swarm-up": _lazy("swarm", "up"),
    "swarm-down": _lazy("swarm", "down"),
    "init": project.init,
    "upgrade-check": project.upgrade_check,
    "move-project": project.move_project,
    "lock": _lazy("commands", "lock"),
}


def main(argv: Sequence[str]) -> int:
    """Run one command: ``argv`` is its name and arguments. Returns the exit status."""
    if not argv or argv[0] not in COMMANDS:
        say(f"usage: python3 scripts/stackctl {{{','.join(COMMANDS)}}} [ARG...]", err=True)
        return 2
    os.chdir(str(ROOT))
    try:
        COMMANDS[argv[0]](list(argv[1:]))
    except Failure as failure:
        if str(failure):
            say(f"error: {failure}", err=True)
        return failure.status
    except KeyboardInterrupt:
        return 130
    return 0


def masked(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret's value replaced by ``masked-secret`` (a plain word, so the
    output stays valid YAML; empty values skipped)."""
    for secret in sorted((value for value in secrets if value), key=len, reverse=True):
        text = text.replace(secret, "masked-secret")
    return text


def config(argv: Sequence[str] = ()) -> None:
    """Print the merged compose configuration of every profile, secrets masked (they are in
    .env, mode 600; a pasted configuration must not carry them)."""
    env = EnvFile.load()
    merged = compose("--profile", "*", "config", *argv, capture=True)
    keys = envfile.SECRETS + envfile.GIVEN_SECRETS
    sys.stdout.write(masked(merged.stdout, [env.get(key) for key in keys]))


COMMANDS["config"] = config
