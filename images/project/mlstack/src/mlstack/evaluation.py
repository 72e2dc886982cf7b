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
