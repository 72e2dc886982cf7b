"""The schedule file's jobs in the engine (Prefect): each job a deployment of the flow
:func:`mlstack_schedules.flow.scheduled_job` on the work pool the project's worker serves; what
`make schedules` lists; `make schedule-run`. The engine's address and credentials come from the
worker's environment (``PREFECT_API_URL``, ``PREFECT_API_AUTH_STRING``)."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

from mlstack_schedules.spec import Job

# The work pool the project's worker serves (processes in its container)
POOL = "mlstack"
FLOW = "mlstack-job"
# A run that is not over after this many seconds is left running by `make schedule-run`
RUN_WAIT = 6 * 3600


def apply(jobs: list[Job]) -> list[str]:
    """Make the engine's deployments the jobs ``jobs``: each created or updated (schedule,
    options, steps), those of jobs no longer in the file deleted (their run history stays).

    Returns:
        One line per change, for `make up` to print.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.schedules import Cron

    from mlstack_schedules.flow import PROJECT, scheduled_job

    said = []
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        except ObjectAlreadyExists:
            pass
        before = {each.name: each for each in deployments(client)}
    for job in jobs:
        strategy = (
            ConcurrencyLimitStrategy.CANCEL_NEW
            if job.if_running == "skip"
            else ConcurrencyLimitStrategy.ENQUEUE
        )
        deployment = scheduled_job.to_deployment(
            name=job.name,
            description=job.description or None,
            schedules=[Cron(job.cron, timezone=job.timezone, active=job.enabled)],
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=strategy),
            parameters={
                "job": job.name,
                "command": list(job.command),
                "timeout": job.timeout,
                "retries": job.retries,
                "retry_delay": job.retry_delay,
                "missed_policy": job.missed,
            },
            tags=["mlstack"],
            job_variables={"working_dir": PROJECT},
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment.apply(work_pool_name=POOL)
        if job.name not in before:
            said.append(f"schedules: added {job.name} ({job.cron}, {job.timezone})")
    with get_client(sync_client=True) as client:
        for name, each in before.items():
            if name not in {job.name for job in jobs}:
                client.delete_deployment(each.id)
                said.append(f"schedules: removed {name} (its past runs stay in the engine)")
    return said


def deployments(client) -> list:
    """The engine's deployments of the stack's flow (one per job), by name."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    found = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW])))
    return sorted(found, key=lambda each: each.name)


@dataclass
class Row:
    """One line of `make schedules`."""

    job: str
    schedule: str
    next_run: str
    last_run: str
    last_state: str


def _when(moment: datetime.datetime | None, timezone: str) -> str:
    if moment is None:
        return "-"
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def next_time(cron: str, timezone: str) -> datetime.datetime:
    """The next time of a cron schedule, as the engine computes it (before its scheduler
    service has made the run, seconds after a job is added)."""
    import asyncio

    from prefect.server.schemas.schedules import CronSchedule

    return asyncio.run(CronSchedule(cron=cron, timezone=timezone).get_dates(n=1))[0]


def _first_run(client, where, state_type, sort) -> list:
    """The first flow run (a list of at most one) of the deployment filter ``where`` whose
    state matches ``state_type`` (a ``FlowRunFilterStateType``), in the order ``sort``."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState

    state = FlowRunFilterState(type=state_type)
    return client.read_flow_runs(
        deployment_filter=where, flow_run_filter=FlowRunFilter(state=state), sort=sort, limit=1
    )


def rows() -> list[Row]:
    """Each job with its schedule, next run, last run and that run's state."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    scheduled = [StateType.SCHEDULED]
    table = []
    with get_client(sync_client=True) as client:
        for each in deployments(client):
            schedule = each.schedules[0].schedule if each.schedules else None
            timezone = getattr(schedule, "timezone", None) or "UTC"
            paused = each.paused or not (each.schedules and each.schedules[0].active)
            where = DeploymentFilter(id=DeploymentFilterId(any_=[each.id]))
            upcoming = _first_run(
                client, where, FlowRunFilterStateType(any_=scheduled),
                FlowRunSort.EXPECTED_START_TIME_ASC,
            )  # fmt: skip
            past = _first_run(
                client, where, FlowRunFilterStateType(not_any_=scheduled),
                FlowRunSort.START_TIME_DESC,
            )  # fmt: skip
            last = past[0] if past else None
            table.append(
                Row(
                    job=each.name,
                    schedule=(f"{schedule.cron} {timezone}" if schedule is not None else "-")
                    + (" (paused)" if paused else ""),
                    next_run=(
                        "-"
                        if paused or schedule is None
                        else _when(
                            (
                                upcoming[0].expected_start_time
                                if upcoming
                                else next_time(schedule.cron, timezone)
                            ),
                            timezone,
                        )
                    ),
                    last_run=(
                        _when(last.start_time or last.expected_start_time, timezone)
                        if last
                        else "never"
                    ),
                    last_state=last.state.name if last and last.state else "-",
                )
            )
    return table


def run_now(job: str) -> tuple[str, str, str]:
    """Run job ``job`` now (as `make schedule-run` does) and wait for its end.

    Returns:
        The run's id, name and final state's name (Completed, Failed, Cancelled, ...) with its
        message.

    Raises:
        LookupError: no such job in the engine.
    """
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run = run_deployment(f"{FLOW}/{job}", timeout=0, tags=["manual"])
    except ObjectNotFound:
        raise LookupError(job) from None
    from prefect import get_client

    deadline = time.monotonic() + RUN_WAIT
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run.id)
            if run.state and run.state.is_final():
                break
            time.sleep(1)
    state = run.state
    detail = f"{state.name}" + (f": {state.message}" if state and state.message else "")
    return str(run.id), run.name, detail
