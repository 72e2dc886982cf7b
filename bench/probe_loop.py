"""Training-loop logging probe, run inside the runner container as a job of the stack's own
kind (`training-loop-logging` of `make bench`).

A loop logs VALUES metric values, once with MLflow's default synchronous logging (the baseline,
``synchronous=True``: MLflow's default when MLFLOW_ENABLE_ASYNC_LOGGING is unset) and once as
the stack's jobs log (``mlstack.job``: asynchronous, batched; ``mlstack.start_run`` waits at the
run's end until every value is stored). Prints one JSON object: ``{"values": N, "sync_loop_s":
..., "async_loop_s": ..., "async_end_s": ..., "sync_stored": N, "async_stored": N}``; seconds
of the loop itself and, for the stack, of the wait at the run's end.

Usage: python bench/probe_loop.py [--values 10000]
"""

import json
import time

import click
import mlflow
import mlstack

EXPERIMENT = "mlstack-bench"


def stored(run_id: str) -> int:
    """How many values of the metric 'loss' the backend store holds for the run."""
    return len(mlflow.MlflowClient().get_metric_history(run_id, "loss"))


@mlstack.job
@click.option("--values", type=click.IntRange(min=1), default=10_000)
def probe(values: int) -> None:
    """Time a loop of log_metric calls, synchronous (MLflow's default) and as the stack's jobs
    log."""
    with mlstack.start_run(run_name="loop-sync", experiment=EXPERIMENT) as sync_run:
        start = time.perf_counter()
        for step in range(values):
            mlflow.log_metric("loss", 1 / (step + 1), step=step, synchronous=True)
        sync_loop = time.perf_counter() - start
    with mlstack.start_run(run_name="loop-async", experiment=EXPERIMENT) as async_run:
        start = time.perf_counter()
        for step in range(values):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        async_loop = time.perf_counter() - start
    async_end = time.perf_counter() - start - async_loop
    result = {"values": values, "sync_loop_s": sync_loop, "async_loop_s": async_loop}
    result |= {"async_end_s": async_end, "sync_stored": stored(sync_run.info.run_id)}
    result |= {"async_stored": stored(async_run.info.run_id)}
    print(json.dumps(result))


if __name__ == "__main__":
    probe()
