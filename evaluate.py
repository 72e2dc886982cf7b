"""Evaluate a logged or registered model with MLflow's evaluation API on held-out data, and,
against a baseline model, fail when the candidate is worse by more than the project's
threshold (so CI can gate a model).

Run it in the runner container, from the repo root:

    docker compose run --rm bash python evaluate.py --model models:/wine-classifier/2 \
        --baseline models:/wine-classifier/1

Without ``--data``, the held-out rows are those of the model's training run (its ``test_size``
and ``random_state`` parameters). The evaluation is a run of its own in the experiment, with
the metrics, plots and the data set, linked to the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mlstack_demo import data, tracking

# The metric the baseline gate compares, as MLflow's default classifier evaluator names it
GATE_METRIC = "accuracy_score"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the models and the data file from the command line (``None``: ``sys.argv``).

    Raises:
        SystemExit: with status 2 and argparse's one-line message, for a bad option.
    """
    parser = argparse.ArgumentParser(description="Evaluate an MLflow model on held-out data.")
    parser.add_argument("--model", metavar="URI", required=True, help="the candidate model")
    parser.add_argument(
        "--data",
        metavar="FILE",
        type=Path,
        default=None,
        help="CSV or Parquet file with a 'target' column (default: the held-out rows of the "
        "model's training run)",
    )
    parser.add_argument(
        "--baseline",
        metavar="URI",
        default=None,
        help="exit 1 when the model's accuracy is below this model's by more than "
        "EVALUATE_MAX_ACCURACY_DROP (env/project.env)",
    )
    parser.add_argument("--run-name", default=None, help="default: MLflow picks one")
    return parser.parse_args(argv)


def held_out_rows(model_uri: str, data_file: Path | None):
    """The rows to evaluate on, labels in the ``target`` column: ``data_file``'s, else the
    held-out rows of the run that trained the model (its ``test_size`` and ``random_state``).

    Raises:
        DataError: when the file cannot be read.
        JobError: when the model is not found or its run does not say how it split the data.
    """
    import mlflow

    if data_file is not None:
        features, target = data.load_data(data_file)
        return features.assign(**{data.TARGET: target})
    with tracking.failure(f"cannot find the model {model_uri}"):
        run_id = mlflow.models.get_model_info(model_uri).run_id
        params = mlflow.get_run(run_id).data.params if run_id else {}
    if not {"test_size", "random_state"} <= set(params):
        raise tracking.JobError(
            f"the run of {model_uri} does not record test_size and random_state; "
            "give the rows to evaluate on with --data FILE"
        )
    features, target = data.load_data()
    _, x_test, _, y_test = data.split(
        features, target, float(params["test_size"]), int(params["random_state"])
    )
    return x_test.assign(**{data.TARGET: y_test})


def evaluate(model_uri: str, rows):
    """MLflow's default classifier evaluation of ``model_uri`` on ``rows``, logged to the
    active run (metrics such as ``accuracy_score``, ``f1_score``; confusion matrix and other
    plots).

    Raises:
        JobError: when the model cannot be loaded or does not fit the rows.
    """
    import mlflow

    with tracking.failure(f"cannot evaluate {model_uri}"):
        return mlflow.models.evaluate(
            model_uri, rows, targets=data.TARGET, model_type="classifier", evaluators=["default"]
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Returns:
        The exit status: 0; 1 when the candidate is worse than the baseline by more than the
        threshold, or after one ``error:`` line when the data, a model or the tracking server
        fails; argparse exits with 2 on a bad option.
    """
    tracking.load_settings()
    args = parse_args(argv)

    def job(log) -> int:
        import mlflow
        from mlflow.models import MetricThreshold
        from mlflow.models.evaluation.validation import ModelValidationFailedException

        max_drop = tracking.number_setting("EVALUATE_MAX_ACCURACY_DROP", 0.02)
        rows = held_out_rows(args.model, args.data)
        passed = True
        with tracking.start_run(run_name=args.run_name) as run:
            mlflow.log_params({"model": args.model, "baseline": args.baseline, "rows": len(rows)})
            candidate = evaluate(args.model, rows)
            accuracy = candidate.metrics[GATE_METRIC]
            print(f"{args.model}: accuracy={accuracy:.3f} on {len(rows)} held-out rows")
            if args.baseline:
                with tracking.start_run(run_name="baseline", nested=True):
                    baseline = evaluate(args.baseline, rows)
                floor = baseline.metrics[GATE_METRIC] - max_drop
                print(f"baseline {args.baseline}: accuracy={baseline.metrics[GATE_METRIC]:.3f}")
                # MLflow's own check, with the floor as a fixed threshold: its relative checks
                # want an improvement over the baseline, not a tolerance below it
                gate = MetricThreshold(threshold=floor, greater_is_better=True)
                try:
                    mlflow.validate_evaluation_results({GATE_METRIC: gate}, candidate)
                except ModelValidationFailedException:
                    passed = False
                mlflow.set_tag("gate", "passed" if passed else "failed")
        experiment = tracking.setting("MLFLOW_EXPERIMENT_NAME", "Default")
        print(f"evaluation run {run.info.run_id} logged to experiment '{experiment}'")
        print(tracking.open_line(run))
        if not passed:
            log.error(
                "error: %s is worse than the baseline: accuracy %.3f is below %.3f (the "
                "baseline's less EVALUATE_MAX_ACCURACY_DROP=%s, env/project.env)",
                args.model,
                accuracy,
                floor,
                max_drop,
            )
            return 1
        return 0

    return tracking.run_job("evaluate", job)


if __name__ == "__main__":
    sys.exit(main())
