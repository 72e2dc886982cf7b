"""Scheduled jobs from the host: ``make schedules``, ``make schedule-run JOB=...``, and the
schedule file applied at each ``make up SCHEDULE=1``. Each runs the stack's
``mlstack_schedules`` commands in the project's running worker container, which holds the
engine's address and password and sees project/schedules.toml: no password on a command
line."""

from __future__ import annotations

import re
from typing import Sequence

from stackctl import envfile
from stackctl.proc import Failure, compose, output

WORKER = "scheduler-worker"
# What a job's name may be (as images/scheduler's spec.NAME)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def _worker_command(*args: str, check_running: bool = True) -> int:
    """``python -m mlstack_schedules ARGS`` in the worker; its exit status (its lines printed).

    Raises:
        Failure: the scheduled jobs are off, or the worker is not running.
    """
    if not envfile.scheduled():
        raise Failure("scheduled jobs are off in this clone; turn them on with make up SCHEDULE=1")
    running = output(["docker", "compose", "ps", "--quiet", "--status", "running", WORKER])
    if check_running and not running:
        raise Failure("the scheduler's worker is not running; start it with make up")
    done = compose(
        "exec", "-T", WORKER, "/opt/prefect/bin/python", "-m", "mlstack_schedules", *args,
        check=False,
    )  # fmt: skip
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


def run(argv: Sequence[str] = ()) -> None:
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
