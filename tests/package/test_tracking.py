"""mlstack.tracking against a local MLflow store (no server): the parameters of a model's run."""

from __future__ import annotations

import mlflow
import pytest

from mlstack import model_run_params
from mlstack.settings import JobError


@pytest.fixture
def logged_model(tmp_path, monkeypatch):
    """A model logged by a run with two parameters, in a file store of its own (the host has mlflow-skinny: no SQL store)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    # MLflow 3 refuses its file store unless asked; the host has no SQL store to use instead
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    with mlflow.start_run() as run:
        mlflow.log_params({"test_size": 0.25, "random_state": 7})
        mlflow.pyfunc.log_model(
            name="model", python_model=lambda rows: rows, pip_requirements=["pandas"]
        )
    yield f"runs:/{run.info.run_id}/model"
    mlflow.set_tracking_uri(None)


def test_the_models_run_gives_its_parameters(logged_model):
    assert model_run_params(logged_model, ("test_size", "random_state"), "x") == {
        "test_size": "0.25",
        "random_state": "7",
    }


def test_a_run_without_a_parameter_says_what_to_do_instead(logged_model):
    with pytest.raises(JobError, match=r"does not record test_size and folds; give --data$"):
        model_run_params(logged_model, ("test_size", "folds"), "give --data")
