"""The project's own code end to end, as its user runs it in the runner: predict.py and
evaluate.py on models that train.py logged, and the notebook on the project's package."""

from __future__ import annotations

import json
import re

import mlflow
import pandas as pd
import pytest
from sklearn.datasets import load_wine

pytestmark = pytest.mark.stack

REGISTERED = "project-code-wine"


def job(stack, script: str, *options: str):
    """Run one of the project's entry points in the runner, as the manual says."""
    return stack.compose("run", "--rm", "bash", "python", script, *options)


def one_error_line(result) -> str:
    """The single ``error: ...`` line of a job that failed with exit 1, without a traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def models(stack) -> dict[str, str]:
    """Model URIs logged by train.py: ``good`` (30 trees), the same registered as version 1 of
    REGISTERED (``registered``), and ``bad``, clearly worse (one tree of depth 1)."""
    good = job(stack, "train.py", "--n-estimators", "30", "--register-model", REGISTERED)
    bad = job(stack, "train.py", "--n-estimators", "1", "--max-depth", "1")
    for result in (good, bad):
        assert result.returncode == 0, result.stdout + result.stderr
    registered = re.search(r"^registered: (\S+) ", good.stdout, re.M)
    assert registered and registered[1] == f"models:/{REGISTERED}/1", good.stdout
    return {
        "good": re.search(r"^model: (\S+)$", good.stdout, re.M)[1],
        "registered": registered[1],
        "bad": re.search(r"^model: (\S+)$", bad.stdout, re.M)[1],
    }


@pytest.fixture
def rows() -> pd.DataFrame:
    """Rows of the data set in shuffled order, labels included (predict.py ignores them)."""
    return load_wine(as_frame=True).frame.sample(40, random_state=7)


def test_predict_gives_the_models_own_predictions_in_the_inputs_order(stack, models, rows):
    rows.to_csv(stack.directory / "project/data/processed/rows.csv", index=False)
    result = job(
        stack,
        "predict.py",
        "--model",
        models["registered"],
        "--input",
        "data/processed/rows.csv",
        "--output",
        "data/processed/predictions.csv",
    )
    assert result.returncode == 0, result.stderr
    assert "40 rows" in result.stdout
    output = pd.read_csv(stack.directory / "project/data/processed/predictions.csv")
    pd.testing.assert_frame_equal(
        output.drop(columns=["prediction"]), rows.reset_index(drop=True), check_dtype=False
    )
    mlflow.set_tracking_uri(stack.urls["mlflow"])
    try:
        model = mlflow.pyfunc.load_model(models["registered"])
    finally:
        mlflow.set_tracking_uri(None)
    own = model.predict(rows.drop(columns=["target"]))
    assert list(output["prediction"]) == list(own)
    # A real model of the data: its predictions agree with the labels
    assert (output["prediction"] == rows["target"].to_numpy()).mean() > 0.8


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda frame: frame.drop(columns=["alcohol"]), id="missing"),
        pytest.param(lambda frame: frame.assign(alcohol="strong"), id="mistyped"),
    ],
)
def test_predict_names_a_missing_or_mistyped_column_in_one_line(stack, models, rows, damage):
    damage(rows).to_csv(stack.directory / "project/data/processed/damaged.csv", index=False)
    result = job(
        stack,
        "predict.py",
        "--model",
        models["good"],
        "--input",
        "data/processed/damaged.csv",
        "--output",
        "data/processed/never.csv",
    )
    line = one_error_line(result)
    assert "alcohol" in line and "damaged.csv" in line, line
    assert not (stack.directory / "project/data/processed/never.csv").exists()


@pytest.mark.parametrize(
    "uri", ["runs:/0123456789abcdef0123456789abcdef/model", "models:/no-such-model/1"]
)
def test_predict_with_a_bad_model_uri_says_so_in_one_line(stack, rows, uri):
    rows.to_csv(stack.directory / "project/data/processed/rows.csv", index=False)
    result = job(
        stack,
        "predict.py",
        "--model",
        uri,
        "--input",
        "data/processed/rows.csv",
        "--output",
        "data/processed/never.csv",
    )
    assert f"cannot load the model {uri}" in one_error_line(result)


def evaluation_run_id(result) -> str:
    """The id of the evaluation run evaluate.py printed."""
    found = re.search(r"^evaluation run ([0-9a-f]{32}) logged", result.stdout, re.M)
    assert found, result.stdout + result.stderr
    return found[1]


def test_evaluate_logs_an_evaluation_run_with_metrics_and_plots_linked_to_the_model(stack, models):
    result = job(stack, "evaluate.py", "--model", models["good"], "--run-name", "eval-good")
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = evaluation_run_id(result)
    assert re.search(
        rf"^open: http://127\.0\.0\.1:\d+/#/experiments/\d+/runs/{run_id}$", result.stdout, re.M
    )
    run = stack.rest("runs/get", run_id=run_id)["run"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["accuracy_score"] > 0.8 and "f1_score" in metrics, metrics
    # The held-out rows of the model's training run: a quarter of the 178
    assert {p["key"]: p["value"] for p in run["data"]["params"]}["rows"] == "45"
    artifacts = stack.rest("artifacts/list", run_id=run_id).get("files", [])
    assert any(f["path"].endswith(".png") for f in artifacts), artifacts
    # Linked to the model: the model's page lists the evaluation's metrics
    model_id = models["good"].removeprefix("models:/")
    model = stack.rest(f"logged-models/{model_id}")["model"]
    linked = {m["run_id"] for m in model["data"].get("metrics", [])}
    assert run_id in linked, model["data"]


def test_evaluate_against_a_baseline_gates_on_the_threshold(stack, models):
    better = job(stack, "evaluate.py", "--model", models["good"], "--baseline", models["bad"])
    assert better.returncode == 0, better.stdout + better.stderr
    worse = job(stack, "evaluate.py", "--model", models["bad"], "--baseline", models["good"])
    line = one_error_line(worse)
    assert "worse than the baseline" in line and "EVALUATE_MAX_ACCURACY_DROP" in line
    # The failed gate is recorded on the evaluation run too
    tags = stack.rest("runs/get", run_id=evaluation_run_id(worse))["run"]["data"]["tags"]
    assert {t["key"]: t["value"] for t in tags}["gate"] == "failed"


def test_the_notebook_loads_the_data_with_the_projects_package(stack):
    result = stack.execute_notebook("notebooks/explore_wine.ipynb", "--stdout")
    assert result.returncode == 0, result.stderr[-3000:]
    cells = json.loads(result.stdout)["cells"]
    loading = next(c for c in cells if "load_data()" in "".join(c["source"]))
    assert "from fixture_project.data import load_data" in "".join(loading["source"])
    printed = "".join(
        "".join(output.get("text", "")) for output in loading["outputs"] if output.get("name")
    )
    assert "178 rows, 13 features" in printed, loading["outputs"]
