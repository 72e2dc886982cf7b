"""Train a random forest on the project's data (scikit-learn's wine data set) and track the run
in MLflow.

Run it in the runner container, from the repo root:

    docker compose run --rm bash python train.py --n-estimators 200 --max-depth 6

The run (parameters, metrics, the model with its signature and an input example, and plots)
is logged to the tracking server named by ``MLFLOW_TRACKING_URI`` under the experiment named by
``MLFLOW_EXPERIMENT_NAME``; both come from the environment, else from ``env/stack.env`` and
``env/project.env``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from mlstack_demo import data, tracking
from mlstack_demo.model import build_model, grow


def positive_int(text: str) -> int:
    """Parse a command-line value that must be a whole number of at least 1.

    Raises:
        argparse.ArgumentTypeError: when ``text`` is not such a number.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is less than 1")
    return value


def fraction(text: str) -> float:
    """Parse a command-line value that must be a number strictly between 0 and 1.

    Raises:
        argparse.ArgumentTypeError: when ``text`` is not such a number.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the hyperparameters and run options from the command line.

    Args:
        argv: the arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The options; ``experiment`` defaults to ``MLFLOW_EXPERIMENT_NAME``.

    Raises:
        SystemExit: with status 2 and argparse's one-line message, for a bad option.
    """
    parser = argparse.ArgumentParser(
        description="Train a random forest on the wine data set and log it to MLflow."
    )
    parser.add_argument("--n-estimators", type=positive_int, default=100)
    parser.add_argument("--max-depth", type=positive_int, default=None, help="default: unlimited")
    parser.add_argument("--min-samples-leaf", type=positive_int, default=1)
    parser.add_argument(
        "--test-size",
        type=fraction,
        default=0.25,
        help="share of rows held out for the metrics (default: 0.25)",
    )
    parser.add_argument("--random-state", type=int, default=42)
    parser.add_argument(
        "--curve-steps",
        type=positive_int,
        default=10,
        help="points of the learning curve (held-out accuracy by number of trees; default: 10)",
    )
    parser.add_argument(
        "--experiment",
        default=os.environ.get("MLFLOW_EXPERIMENT_NAME", "Default"),
        help="MLflow experiment (default: MLFLOW_EXPERIMENT_NAME from env/project.env)",
    )
    parser.add_argument("--run-name", default=None, help="default: MLflow picks one")
    parser.add_argument(
        "--register-model",
        metavar="NAME",
        default=None,
        help="also register the model in MLflow's model registry under NAME (a new version)",
    )
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the model, evaluate it on held-out rows and log everything to one MLflow run.

    Args:
        args: the options from :func:`parse_args`.

    Returns:
        ``run`` (the finished ``mlflow.ActiveRun``), ``model_uri``, ``registered_model_uri``
        (``None`` unless ``--register-model``) and ``metrics`` (a dict of floats in 0..1).

    Raises:
        mlflow.exceptions.MlflowException: when the server refuses a request.
        requests.RequestException: when the server goes away during the run.
    """
    import matplotlib.pyplot as plt
    import mlflow
    from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, f1_score

    features, target = data.load_data()
    x_train, x_test, y_train, y_test = data.split(
        features, target, test_size=args.test_size, random_state=args.random_state
    )
    model = build_model(
        max_depth=args.max_depth,
        min_samples_leaf=args.min_samples_leaf,
        random_state=args.random_state,
    )

    with tracking.start_run(run_name=args.run_name, experiment=args.experiment) as run:
        mlflow.log_params(
            {
                "n_estimators": args.n_estimators,
                "max_depth": args.max_depth,
                "min_samples_leaf": args.min_samples_leaf,
                "test_size": args.test_size,
                "random_state": args.random_state,
                "curve_steps": args.curve_steps,
            }
        )
        frame = features.assign(**{data.TARGET: target})
        tracking.log_dataset(mlflow.data.from_pandas(frame, name="wine", targets=data.TARGET))
        for n_trees in grow(model, x_train, y_train, args.n_estimators, args.curve_steps):
            mlflow.log_metric("curve_accuracy", model.score(x_test, y_test), step=n_trees)
        predicted = model.predict(x_test)
        metrics = {
            "accuracy": float(accuracy_score(y_test, predicted)),
            "f1_macro": float(f1_score(y_test, predicted, average="macro")),
            "train_accuracy": float(model.score(x_train, y_train)),
        }
        mlflow.log_metrics(metrics)

        figure, axes = plt.subplots(figsize=(5, 5))
        ConfusionMatrixDisplay.from_predictions(y_test, predicted, ax=axes)
        axes.set_title("Wine: confusion matrix on held-out rows")
        mlflow.log_figure(figure, "plots/confusion_matrix.png")
        plt.close(figure)

        model_info = tracking.log_sklearn_model(
            model, x_train, x_test.head(5), registered_model_name=args.register_model
        )
    registered = None
    if args.register_model:
        registered = f"models:/{args.register_model}/{model_info.registered_model_version}"
    return {
        "run": run,
        "model_uri": model_info.model_uri,
        "registered_model_uri": registered,
        "metrics": metrics,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Returns:
        The exit status: 0, or 1 when tracking fails or a disk is full (one ``error:`` line on
        stderr, also in ``logs/jobs.log``); argparse exits with 2 on a bad option.
    """
    tracking.load_settings()
    args = parse_args(argv)

    def job(log) -> None:
        log.info(
            "training on the wine data, tracking at %s, experiment '%s'",
            tracking.setting("MLFLOW_TRACKING_URI", ""),
            args.experiment,
        )
        result = train(args)
        run_id = result["run"].info.run_id
        metrics = ", ".join(f"{name}={value:.3f}" for name, value in result["metrics"].items())
        print(f"run {run_id} logged to experiment '{args.experiment}': {metrics}")
        print(f"model: {result['model_uri']}")
        if result["registered_model_uri"]:
            print(f"registered: {result['registered_model_uri']} (make serve MODEL=...)")
        print(tracking.open_line(result["run"]))
        log.debug("run %s finished: %s", run_id, result["metrics"])

    return tracking.run_job("train", job)


if __name__ == "__main__":
    sys.exit(main())
