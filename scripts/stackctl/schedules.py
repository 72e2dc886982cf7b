"""Scheduled jobs from the host: ``make schedules``, ``make schedule-run JOB=...``, and the
schedule file applied at each ``make up SCHEDULE=1`` (and ``make swarm-up``). Each runs the
stack's ``mlstack_schedules`` commands in the project's running worker container, which holds
the engine's address and password and sees project/schedules.toml; on a swarm, in a one-off
container of the worker's image on the stack's network, the password in an environment file
readable by its owner only, deleted after. No password is on a command line."""

from __future__ import annotations

import os
import re
from typing import List, Optional, Sequence

from stackctl import envfile
from stackctl.envfile import EnvFile
from stackctl.proc import PROJECT, ROOT, Failure, compose, output, run

WORKER = "scheduler-worker"
# What a job's name may be (as images/scheduler's spec.NAME)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def _worker_command(*args: str) -> int:
    """``python -m mlstack_schedules ARGS`` in the worker; its exit status (its lines printed).

    Raises:
        Failure: the scheduled jobs are off, or the worker is not running.
    """
    if not envfile.scheduled():
        raise Failure("scheduled jobs are off in this clone; turn them on with make up SCHEDULE=1")
    running = output(["docker", "compose", "ps", "--quiet", "--status", "running", WORKER])
    if running:
        done = compose(
            "exec", "-T", WORKER, "/opt/prefect/bin/python", "-m", "mlstack_schedules", *args,
            check=False,
        )  # fmt: skip
        return done.returncode
    image = _swarm_worker_image()
    if image:
        return _one_off(image, list(args))
    raise Failure("the scheduler's worker is not running; start it with make up")


def _swarm_stack() -> str:
    return f"{EnvFile.load().get('COMPOSE_PROJECT_NAME')}-swarm"


def _swarm_worker_image() -> Optional[str]:
    """The image of the swarm stack's worker service (make swarm-up SCHEDULE=1), or None."""
    return output(
        [
            "docker", "service", "inspect", "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}", f"{_swarm_stack()}_{WORKER}",
        ]
    )  # fmt: skip


def _one_off(image: str, args: List[str]) -> int:
    """``python -m mlstack_schedules ARGS`` in a container of ``image`` on the swarm stack's
    network, as the host user, with the project folder; its exit status."""
    env = EnvFile.load()
    folder = ROOT / ".mlstack" / "swarm"
    folder.mkdir(parents=True, exist_ok=True)
    settings = folder / "scheduler.env"
    descriptor = os.open(str(settings), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(
            "PREFECT_API_URL=http://scheduler:4200/api\n"
            f"PREFECT_API_AUTH_STRING={env.get('MLSTACK_SCHEDULER_AUTH')}\n"
        )
    try:
        done = run(
            [
                "docker", "run", "--rm", "--network", f"{_swarm_stack()}_default",
                "--env-file", str(settings), "--user",
                f"{env.get('MLSTACK_UID')}:{env.get('MLSTACK_GID')}",
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
                "--volume", f"{PROJECT}:/project:ro", "--workdir", "/project",
                "--entrypoint", "/opt/prefect/bin/python", image, "-m", "mlstack_schedules",
                *args,
            ],
            check=False,
        )  # fmt: skip
    finally:
        settings.unlink()
    return done.returncode


def apply() -> None:
    """Check project/schedules.toml and make the engine's jobs match it (make up).

    Raises:
        Failure: a bad entry (its line printed by the worker), nothing changed.
    """
    if _worker_command("apply") != 0:
        raise Failure("", status=1)


def schedules(argv: Sequence[str] = ()) -> None:
    """Each job with its schedule, next run, last run and that run's state."""
    if _worker_command("list") != 0:
        raise Failure("", status=1)


def run_now(argv: Sequence[str] = ()) -> None:
    """Run job ``argv[0]`` now and wait for its end (make schedule-run JOB=...).

    Raises:
        Failure: no or a malformed job name (status 2); the job did not complete (status 1).
    """
    job = argv[0] if argv else ""
    if not job:
        raise Failure(
            "say which job: make schedule-run JOB=nightly-train (make schedules lists them)",
            status=2,
        )
    if not NAME.match(job):
        raise Failure(f"'{job}' is not a job name: letters, digits, - and _", status=2)
    if _worker_command("run", job) != 0:
        raise Failure("", status=1)
