"""The flow every scheduled job runs as, in the project's worker (its runner image): each step a
process in the project folder with the environment ``docker compose run bash`` gives (tracking
URI, credentials, the host UID), its output in the engine's logs; a step that fails (retried as
the job says) fails the job, its MLflow runs and, with ``MLSTACK_NOTIFY_URL`` set, sends one
message through apprise."""

from __future__ import annotations

import datetime
import os
import shlex
import signal
import subprocess
import threading
from collections import deque
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run
from prefect.states import Cancelled

# The project folder compose mounts
PROJECT = "/project"
# What a job's processes never get: the engine's credentials and the notification URL
PRIVATE = ("PREFECT_", "MLSTACK_NOTIFY_URL")
# A scheduled time this long (seconds) before the worker started passed while the stack was
# down: the job's `missed` option decides. A run that waited behind the job's previous one
# (if_running = "queue") while the worker ran is never missed
MISSED_BEFORE_START = 60


class StepFailed(RuntimeError):
    """A step exited non-zero or ran out of time; the message is the step, its status and its
    last error line."""


def job_environment(job: str, scheduled: str, run_id: str) -> dict[str, str]:
    """The environment of a job's processes: the worker's (the runner's), less the engine's
    settings, plus the job's name, its scheduled time (ISO 8601) and the engine's run id, which
    the stack's MLflow plugin puts on each MLflow run as tags (mlstack.schedule_context)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(PRIVATE)}
    environment.update(
        MLSTACK_SCHEDULE_JOB=job,
        MLSTACK_SCHEDULED_TIME=scheduled,
        MLSTACK_SCHEDULE_RUN_ID=run_id,
    )
    return environment


def last_error_line(lines: "deque[str]") -> str:
    """The line that says what went wrong: the last ``error:`` line (the stack's jobs print
    one), else the last line of a traceback's end, else the last line; empty for no output."""
    for line in reversed(lines):
        if line.lower().startswith("error:") or " error: " in line.lower():
            return line.strip()
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return ""


@task(name="step", log_prints=False)
def run_step(step: str, environment: dict[str, str], timeout: int | None) -> None:
    """Run one step in the project folder, its output (stdout and stderr) line by line into
    the engine's log.

    Raises:
        StepFailed: a non-zero exit, or still running after ``timeout`` seconds (its process
            group is stopped).
    """
    log = get_run_logger()
    log.info("$ %s", step)
    tail: deque[str] = deque(maxlen=50)
    process = subprocess.Popen(
        shlex.split(step),
        cwd=PROJECT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        # Its own process group: a timeout stops the step and every process it started
        start_new_session=True,
    )
    stopped = threading.Event()
    timer = None
    if timeout is not None:
        timer = threading.Timer(timeout, _stop, (process, stopped))
        timer.start()
    try:
        for line in process.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log.info("%s", line)
        status = process.wait()
    finally:
        if timer:
            timer.cancel()
    if stopped.is_set():
        raise StepFailed(f"{step!r} ran longer than its timeout of {timeout} s and was stopped")
    if status != 0:
        raise StepFailed(f"{step!r} exited with status {status}: {last_error_line(tail)}")


def _stop(process: subprocess.Popen, stopped: threading.Event) -> None:
    stopped.set()
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def fail_mlflow_runs(environment: dict[str, str], run_id: str) -> str:
    """Mark this job run's MLflow runs FAILED (those the job's scripts ended as FINISHED) with
    the runner's own MLflow client; returns their ids, comma-separated (may be empty)."""
    done = subprocess.run(
        ["python", "-m", "mlstack.schedule_context", "fail", run_id],
        cwd=PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        get_run_logger().warning("could not mark the MLflow runs failed: %s", done.stderr.strip())
    return done.stdout.strip()


def run_link(run_id: str) -> str:
    """`` (logs: <the engine's UI>/runs/flow-run/<run_id>)``, with the UI's host URL that
    `make up` wrote to the project's .mlstack/urls.env; empty when it did not."""
    from dotenv import dotenv_values

    ui = dotenv_values(f"{PROJECT}/.mlstack/urls.env").get("MLSTACK_SCHEDULER_URL")
    return f" (logs: {ui}/runs/flow-run/{run_id})" if ui else ""


def notify(job: str, message: str) -> None:
    """One message through apprise to ``MLSTACK_NOTIFY_URL`` (.env), when set."""
    url = os.environ.get("MLSTACK_NOTIFY_URL", "")
    if not url:
        return
    import apprise

    sender = apprise.Apprise()
    if not sender.add(url):
        get_run_logger().warning("MLSTACK_NOTIFY_URL is not a URL apprise knows; no message")
        return
    if not sender.notify(title=f"mlstack: job {job} failed", body=message):
        get_run_logger().warning("the failure message could not be sent")


def worker_started() -> datetime.datetime:
    """When this container's first process started (the worker, after `make up`, a crash or
    a Docker restart), from the kernel: /proc/stat's boot time plus /proc/1/stat's start time
    (field 22, clock ticks after boot)."""
    with open("/proc/stat") as stat:
        boot = next(int(line.split()[1]) for line in stat if line.startswith("btime "))
    with open("/proc/1/stat") as stat:
        ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    seconds = boot + ticks / os.sysconf("SC_CLK_TCK")
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def missed(
    policy: str, deployment_id: str, scheduled: datetime.datetime, started: datetime.datetime
) -> str | None:
    """Why a run scheduled at ``scheduled`` does not run, or None when it runs. A time over
    :data:`MISSED_BEFORE_START` seconds before the worker ``started`` passed while the stack
    was down: ``skip`` skips every such run; ``run-once`` runs only the latest of them."""
    if (started - scheduled).total_seconds() <= MISSED_BEFORE_START:
        return None
    when = scheduled.isoformat(timespec="minutes")
    if policy == "skip":
        return f'missed: scheduled at {when} while the stack was down (missed = "skip")'
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        later = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(
                    after_=scheduled + datetime.timedelta(seconds=1),
                    before_=datetime.datetime.now(datetime.timezone.utc),
                ),
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])
                ),
            ),
            limit=1,
        )
    if later:
        return f"missed: scheduled at {when} while the stack was down; a later missed run runs once"
    return None


@flow(name="mlstack-job")
def scheduled_job(
    job: str,
    command: list[str],
    timeout: int | None = None,
    retries: int = 0,
    retry_delay: int = 60,
    missed_policy: str = "skip",
) -> Any:
    """Run a job's steps in order; the first that fails (after its retries) fails the job."""
    log = get_run_logger()
    scheduled = flow_run.scheduled_start_time
    run_id = str(flow_run.id)
    record = _record(run_id)
    if record.auto_scheduled:
        reason = missed(missed_policy, str(record.deployment_id), scheduled, worker_started())
        if reason:
            log.info("%s", reason)
            return Cancelled(message=reason)
    environment = job_environment(job, scheduled.isoformat(), run_id)
    step = run_step.with_options(retries=retries, retry_delay_seconds=retry_delay)
    try:
        for line in command:
            step(line, environment, timeout)
    except Exception as error:
        runs = fail_mlflow_runs(environment, run_id)
        where = f"; MLflow runs {runs} marked FAILED" if runs else ""
        notify(
            job,
            f"job {job}, run {flow_run.name} ({run_id}) failed: {error}{where}{run_link(run_id)}",
        )
        raise


def _record(run_id: str) -> Any:
    """The engine's record of this run: whether its schedule made it (``auto_scheduled``; not
    `make schedule-run`), its deployment (the job)."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)
