"""A scheduled job's MLflow runs carry the job: the stack's scheduler worker starts each step
with ``MLSTACK_SCHEDULE_JOB``, ``MLSTACK_SCHEDULED_TIME`` and ``MLSTACK_SCHEDULE_RUN_ID`` (the
engine's run id), and this MLflow plugin (the ``mlflow.run_context_provider`` entry point) puts
them on every run the job's scripts start, a script users wrote themselves included. When the
job fails, the worker calls ``python -m mlstack.schedule_context fail RUN_ID`` to mark those
runs FAILED: a script that exits 1 after its run ended (an evaluation gate) left it FINISHED."""

from __future__ import annotations

import os
import sys

from mlflow.tracking.context.abstract_context import RunContextProvider

# The tags, and the environment variables they come from
TAGS = {
    "mlstack.schedule.job": "MLSTACK_SCHEDULE_JOB",
    "mlstack.schedule.scheduled_time": "MLSTACK_SCHEDULED_TIME",
    "mlstack.schedule.run_id": "MLSTACK_SCHEDULE_RUN_ID",
}


def schedule_tags() -> dict[str, str]:
    """The tags of the scheduled job this process runs in, from its environment; ``{}`` when
    it runs by hand."""
    return {tag: os.environ[name] for tag, name in TAGS.items() if os.environ.get(name)}


class ScheduledJobContext(RunContextProvider):
    """Adds :func:`schedule_tags` to a new run of a scheduled job."""

    def in_context(self) -> bool:
        return bool(schedule_tags())

    def tags(self) -> dict[str, str]:
        return schedule_tags()


def fail_runs(run_id: str) -> list[str]:
    """Mark FAILED the MLflow runs, in every experiment, tagged with the engine's run id
    ``run_id`` that ended FINISHED or still say RUNNING.

    Returns:
        Their MLflow run ids.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    runs = client.search_runs(
        experiment_ids=[each.experiment_id for each in client.search_experiments()],
        filter_string=f"tags.`mlstack.schedule.run_id` = '{run_id}'",
    )
    failed = []
    for run in runs:
        if run.info.status in ("FINISHED", "RUNNING"):
            client.set_terminated(run.info.run_id, status="FAILED")
            failed.append(run.info.run_id)
    return failed


if __name__ == "__main__":
    if sys.argv[1:2] != ["fail"] or len(sys.argv) != 3:
        sys.exit("usage: python -m mlstack.schedule_context fail RUN_ID")
    print(",".join(fail_runs(sys.argv[2])))
