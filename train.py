"""Train a random forest on scikit-learn's wine data set and track the run in MLflow.

Run it in the runner container, from the repo root:

    docker compose run --rm bash python train.py --n-estimators 200 --max-depth 6

The run (parameters, metrics, the model with its signature and an input example, and plots)
is logged to the tracking server named by ``MLFLOW_TRACKING_URI`` under the experiment named by
``MLFLOW_EXPERIMENT_NAME``; both come from the environment, else from ``env/stack.env``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

from dotenv import load_dotenv

from logging_config import setup_logging

PROJECT_DIR = Path(__file__).resolve().parent
# Shared settings (experiment name, tracking URI), then the URLs `make up` found on the host
SETTINGS_FILES = (PROJECT_DIR / "env" / "stack.env", PROJECT_DIR / ".mlstack" / "urls.env")


class TrackingServerError(RuntimeError):
    """The MLflow tracking server could not be reached or refused a request."""


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
        help="MLflow experiment (default: MLFLOW_EXPERIMENT_NAME from env/stack.env)",
    )
    parser.add_argument("--run-name", default=None, help="default: MLflow picks one")
    parser.add_argument(
        "--register-model",
        metavar="NAME",
        default=None,
        help="also register the model in MLflow's model registry under NAME (a new version)",
    )
    return parser.parse_args(argv)


def check_tracking_server(tracking_uri: str, timeout: float = 10.0) -> None:
    """Fail fast, in one line, when an HTTP tracking server does not answer ``/health``.

    Args:
        tracking_uri: the tracking URI (``MLFLOW_TRACKING_URI``); non-HTTP URIs are not checked.
        timeout: seconds to wait for the answer.

    Raises:
        TrackingServerError: when the server cannot be reached or is not healthy.
    """
    if urlparse(tracking_uri).scheme not in ("http", "https"):
        return
    import requests

    try:
        response = requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout)
    except requests.RequestException as error:
        raise TrackingServerError(
            f"the MLflow tracking server at {tracking_uri} is not reachable "
            f"({type(error).__name__}); start the stack with 'make up'"
        ) from None
    if response.status_code != 200:
        raise TrackingServerError(
            f"the MLflow tracking server at {tracking_uri} answered /health with "
            f"HTTP {response.status_code}; see 'make logs'"
        )


def run_url(experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI as the user opens it on the host.

    Returns:
        ``<MLSTACK_MLFLOW_URL>/#/experiments/<id>/runs/<id>``, with the host's mapped port that
        `make up` wrote to ``.mlstack/urls.env``; ``None`` when that URL is not known.
    """
    ui_url = os.environ.get("MLSTACK_MLFLOW_URL")
    if not ui_url:
        return None
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def curve_points(n_estimators: int, steps: int) -> list[int]:
    """Numbers of trees at which the learning curve is measured: ``steps`` points, evenly
    spread, ending at ``n_estimators`` (fewer when there are fewer trees than steps)."""
    return sorted({max(1, round(n_estimators * (i + 1) / steps)) for i in range(steps)})


def log_dataset(dataset: Any, attempts: int = 3) -> None:
    """Log the training data set to the active run (``mlflow.log_input``).

    Two runs that log the same data set at the same moment race in the tracking server, and
    the loser gets a UNIQUE-constraint error (the row the winner just wrote): retrying links the
    run to that row.

    Raises:
        mlflow.exceptions.MlflowException: when the server refuses for another reason, or
            ``attempts`` times.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    for attempt in range(1, attempts + 1):
        try:
            mlflow.log_input(dataset, context="training")
            return
        except MlflowException as error:
            if "UNIQUE constraint failed: datasets" not in str(error) or attempt == attempts:
                raise


def disk_full(error: BaseException) -> OSError | None:
    """The "no space left on device" error behind ``error``, if any: MLflow and skops wrap the
    OSError in errors of their own (followed through ``__cause__`` and ``__context__``)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the model, evaluate it on held-out rows and log everything to one MLflow run.

    Args:
        args: the options from :func:`parse_args`.

    Returns:
        ``run_id``, ``experiment_id``, ``model_uri``, ``registered_model_uri`` (``None``
        unless ``--register-model``) and ``metrics`` (a dict of floats in 0..1).

    Raises:
        mlflow.exceptions.MlflowException: when the server refuses a request.
        requests.RequestException: when the server goes away during the run.
    """
    import matplotlib.pyplot as plt
    import mlflow
    import skops.io
    from mlflow.models import infer_signature
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    data = load_wine(as_frame=True)
    features, target = data.data, data.target
    x_train, x_test, y_train, y_test = train_test_split(
        features,
        target,
        test_size=args.test_size,
        random_state=args.random_state,
        stratify=target,
    )
    # warm_start grows the same forest a step at a time, for the learning curve
    model = RandomForestClassifier(
        max_depth=args.max_depth,
        min_samples_leaf=args.min_samples_leaf,
        random_state=args.random_state,
        warm_start=True,
    )

    # The labels are class numbers: integers without missing values are what we mean
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
    mlflow.set_experiment(args.experiment)
    run = mlflow.start_run(run_name=args.run_name)
    try:
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
        log_dataset(mlflow.data.from_pandas(data.frame, name="wine", targets="target"))
        for n_trees in curve_points(args.n_estimators, args.curve_steps):
            model.set_params(n_estimators=n_trees).fit(x_train, y_train)
            mlflow.log_metric("curve_accuracy", model.score(x_test, y_test), step=n_trees)
        predicted = model.predict(x_test)
        metrics = {
            "accuracy": float(accuracy_score(y_test, predicted)),
            "f1_macro": float(f1_score(y_test, predicted, average="macro")),
            "train_accuracy": float(model.score(x_train, y_train)),
        }
        mlflow.log_metrics(metrics)

        figure, axes = plt.subplots(figsize=(5, 5))
        ConfusionMatrixDisplay.from_predictions(
            y_test, predicted, display_labels=data.target_names, ax=axes
        )
        axes.set_title("Wine: confusion matrix on held-out rows")
        mlflow.log_figure(figure, "plots/confusion_matrix.png")
        plt.close(figure)

        # MLflow saves scikit-learn models with skops, which loads only the types it is told to
        # trust: declare exactly the types of this model, which we built ourselves.
        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
        signature = infer_signature(x_train, model.predict(x_train))
        model_info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=x_test.head(5),
            skops_trusted_types=trusted,
            registered_model_name=args.register_model,
        )
    except BaseException:
        # Mark the run failed if the server still answers; the error itself is what matters
        with contextlib.suppress(Exception):
            mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run()
    registered = None
    if args.register_model:
        registered = f"models:/{args.register_model}/{model_info.registered_model_version}"
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
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
    for settings in SETTINGS_FILES:
        if os.access(settings, os.R_OK):
            # override=False: a variable already in the environment (compose's) wins
            load_dotenv(settings, override=False)
    args = parse_args(argv)
    try:
        log = setup_logging("train")
    except (ValueError, OSError) as error:
        print(f"error: cannot set up logging: {error}", file=sys.stderr)
        return 1
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    log.info(
        "training on the wine data, tracking at %s, experiment '%s'", tracking_uri, args.experiment
    )
    try:
        check_tracking_server(tracking_uri)
        result = train(args)
    except TrackingServerError as error:
        log.error("error: %s", error)
        return 1
    except Exception as error:
        from mlflow.exceptions import MlflowException
        from requests import RequestException

        if full := disk_full(error):
            where = full.filename or f"the temporary folder {tempfile.gettempdir()}"
            log.error("error: no space left on the device of %s; free some space, retry", where)
            return 1
        if not isinstance(error, (MlflowException, RequestException)):
            raise
        message = str(error)
        if isinstance(error, RequestException) or "Max retries exceeded" in message:
            # MLflow's own message for this is a long urllib3 retry trace
            log.error(
                "error: the MLflow tracking server at %s stopped answering, so the job did not "
                "finish; check 'make ps' and 'make logs', then run train.py again",
                tracking_uri,
            )
        else:
            first_line = (message.strip().splitlines() or [type(error).__name__])[0]
            log.error("error: logging to MLflow at %s failed: %s", tracking_uri, first_line)
        return 1

    metrics = ", ".join(f"{name}={value:.3f}" for name, value in result["metrics"].items())
    print(f"run {result['run_id']} logged to experiment '{args.experiment}': {metrics}")
    print(f"model: {result['model_uri']}")
    if result["registered_model_uri"]:
        print(f"registered: {result['registered_model_uri']} (make serve MODEL=...)")
    url = run_url(result["experiment_id"], result["run_id"])
    if url:
        print(f"open: {url}")
    else:
        print("open it at the MLflow URL that 'make urls' prints")
    log.debug("run %s finished: %s", result["run_id"], result["metrics"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
