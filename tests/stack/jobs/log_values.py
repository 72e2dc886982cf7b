"""A job of the stack's tests: logs VALUES metric values in a loop through the stack's package
(mlstack.job, mlstack.start_run), as a training loop does, then ends, or fails with --fail.
Prints the run's id and whether MLflow logged asynchronously."""

import click
import mlflow
import mlstack
from mlflow.environment_variables import MLFLOW_ENABLE_ASYNC_LOGGING


@mlstack.job
@click.option("--values", type=click.IntRange(min=1), default=10_000)
@click.option("--fail", is_flag=True, help="Raise after the loop, inside the run.")
@mlstack.experiment_option
@mlstack.run_name_option
def log_values(values, fail, experiment, run_name):
    """Log VALUES values of the metric 'loss', one per step."""
    with mlstack.start_run(run_name=run_name, experiment=experiment) as run:
        print(
            f"run {run.info.run_id}, asynchronous: {MLFLOW_ENABLE_ASYNC_LOGGING.get()}", flush=True
        )
        for step in range(values):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        if fail:
            raise mlstack.JobError("failed on purpose after the loop")


if __name__ == "__main__":
    log_values()
