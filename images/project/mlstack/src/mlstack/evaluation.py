"""Model evaluation as the stack's jobs run it: MLflow's evaluation API in the active run, and a
gate against a baseline model (CI fails a model that got worse) through MLflow's own check."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Iterator

from .tracking import failure

# The metric the baseline gate compares, as MLflow's default classifier evaluator names it
GATE_METRIC = "accuracy_score"


def evaluate_classifier(model_uri: str, rows: Any, target: str) -> Any:
    """MLflow's default classifier evaluation of ``model_uri`` on ``rows`` (a DataFrame of
    features and the label column ``target``), logged to the active run.

    Returns:
        MLflow's ``EvaluationResult`` (``metrics["accuracy_score"]``, ...).

    Raises:
        JobError: when the model cannot be loaded or does not fit the rows (one line).
    """
    import mlflow

    with failure(f"cannot evaluate {model_uri}"):
        return mlflow.models.evaluate(
            model_uri, rows, targets=target, model_type="classifier", evaluators=["default"]
        )


@dataclass
class Gate:
    """A candidate's comparison with a baseline on :data:`GATE_METRIC`.

    Attributes:
        passed: whether the candidate's value is at least ``floor``.
        baseline: the baseline's value.
        floor: the baseline's value less the tolerated drop.
    """

    passed: bool
    baseline: float
    floor: float


def compare_with_baseline(
    candidate: Any, baseline_uri: str, rows: Any, target: str, max_drop: float
) -> Gate:
    """Evaluate ``baseline_uri`` on the same ``rows`` in a nested run named ``baseline``, then
    check with MLflow's own validation that ``candidate`` (an ``EvaluationResult``) is at most
    ``max_drop`` below it on :data:`GATE_METRIC`; tag the active run ``gate=passed|failed``.

    Raises:
        JobError: when the baseline cannot be evaluated (one line).
    """
    import mlflow
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    from .tracking import start_run

    with start_run(run_name="baseline", nested=True):
        value = evaluate_classifier(baseline_uri, rows, target).metrics[GATE_METRIC]
    # A fixed threshold at the floor: MLflow's relative checks want an improvement over the
    # baseline, not a tolerance below it
    threshold = MetricThreshold(threshold=value - max_drop, greater_is_better=True)
    try:
        mlflow.validate_evaluation_results({GATE_METRIC: threshold}, candidate)
        passed = True
    except ModelValidationFailedException:
        passed = False
    mlflow.set_tag("gate", "passed" if passed else "failed")
    return Gate(passed=passed, baseline=value, floor=value - max_drop)


@contextlib.contextmanager
def timed(metric: str) -> Iterator[None]:
    """Log the wall time of the block, in seconds, as ``metric`` of the active run, when the
    block ends without an error."""
    import mlflow

    started = time.monotonic()
    yield
    mlflow.log_metric(metric, time.monotonic() - started)


@dataclass
class ModelVersion:
    """A registered model version: the registered model's ``name`` and its ``version``."""

    name: str
    version: str

    @property
    def uri(self) -> str:
        """``models:/<name>/<version>``."""
        return f"models:/{self.name}/{self.version}"


def registered_version(model_uri: str) -> ModelVersion:
    """The registered model version ``model_uri`` names: ``models:/<name>/<version>``,
    ``models:/<name>/latest`` (its highest version) or ``models:/<name>@<alias>``.

    Raises:
        JobError: another kind of URI, or no such model, version or alias (one line).
    """
    import re

    from mlflow.tracking import MlflowClient

    from .settings import JobError

    found = re.match(r"^models:/(?P<name>[^/@]+)(/(?P<version>\d+|latest)|@(?P<alias>[\w-]+))$",
                     model_uri)  # fmt: skip
    if not found:
        raise JobError(
            f"{model_uri} is not a registered model version (models:/<name>/<version>, "
            "models:/<name>/latest or models:/<name>@<alias>)"
        )
    name, client = found["name"], MlflowClient()
    with failure(f"no registered model version {model_uri}"):
        if found["alias"]:
            return ModelVersion(
                name, client.get_model_version_by_alias(name, found["alias"]).version
            )
        if found["version"] == "latest":
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise JobError(f"the registered model {name} has no version")
            return ModelVersion(name, str(max(int(each.version) for each in versions)))
        return ModelVersion(name, client.get_model_version(name, found["version"]).version)


def alias_version(name: str, alias: str) -> ModelVersion | None:
    """The version of registered model ``name`` behind ``alias``; None when the alias is not
    set (the first candidate of a project)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return ModelVersion(name, MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def set_alias(version: ModelVersion, alias: str) -> None:
    """Point ``alias`` of the registered model at ``version`` (MLflow moves it from any other
    version)."""
    from mlflow.tracking import MlflowClient

    MlflowClient().set_registered_model_alias(version.name, alias, version.version)
