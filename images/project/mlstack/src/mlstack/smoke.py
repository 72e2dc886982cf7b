"""The stack's smoke test as a job (`make smoke`; in the runner: ``python -m mlstack.smoke``):
logs a run with a parameter, a metric history and an artifact to the tracking server, reads
them back through MLflow's client, and prints one line. Independent of the project's code, so a
project's CI can prove its stack works whatever its train.py does."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .jobs import experiment_option, job
from .settings import JobError
from .tracking import open_line, start_run

STEPS = 100


@job
@experiment_option
def smoke(experiment: str) -> None:
    """Log a small run and read it back: the tracking server, its stores and the client work."""
    import mlflow

    with start_run(run_name="mlstack-smoke", experiment=experiment) as run:
        mlflow.log_param("steps", STEPS)
        for step in range(STEPS):
            mlflow.log_metric("value", step / STEPS, step=step)
        with tempfile.TemporaryDirectory() as folder:
            note = Path(folder) / "smoke.txt"
            note.write_text("mlstack smoke test\n")
            mlflow.log_artifact(str(note))
    client = mlflow.MlflowClient()
    stored = client.get_run(run.info.run_id)
    history = client.get_metric_history(run.info.run_id, "value")
    artifact = Path(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="smoke.txt")
    )
    if (
        stored.info.status != "FINISHED"
        or len(history) != STEPS
        or stored.data.params != {"steps": str(STEPS)}
    ):
        raise JobError(
            f"the run {run.info.run_id} was not stored whole: status {stored.info.status}, "
            f"{len(history)} of {STEPS} metric values, parameters {stored.data.params}"
        )
    if artifact.read_text() != "mlstack smoke test\n":
        raise JobError(f"the artifact of run {run.info.run_id} came back changed")
    print(
        f"smoke: run {run.info.run_id} logged and read back whole (its {STEPS} values, parameter and artifact)"
    )
    print(open_line(run))


if __name__ == "__main__":
    smoke()
