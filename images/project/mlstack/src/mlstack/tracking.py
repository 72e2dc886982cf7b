"""The MLflow plumbing jobs and notebooks share, so that they read as ML: the tracking-server
check, runs with their user and host URL, logging data sets and models, and MLflow's errors
turned into one line."""

from __future__ import annotations

import contextlib
import errno
import getpass
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlparse

from .settings import DEFAULT_EXPERIMENT, JobError, setting

# How the backend store words the loss of a race to insert the same data set (SQLite, PostgreSQL)
DATASET_RACE = ("UNIQUE constraint failed: datasets", "duplicate key value violates unique")

# MLflow's hint on every schema it infers from integer columns (a data set's, a model's
# signature): the project's labels are class numbers, integers without missing values are meant
warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")

# A model's reference data: a sample of its training features among its files, which monitoring
# (mlstack.monitoring) compares the requests a released model served with
REFERENCE_FILE = "reference.parquet"
REFERENCE_ROWS = 1000

# What a scikit-learn model's prediction imports besides the modules of the model's own types:
# the flavor's packages, the numerical ones it runs on, and pandas for MLflow's pyfunc and
# scoring server (the release image installs mlflow-skinny, which does not require it)
PREDICT_PACKAGES = ("scikit-learn", "skops", "numpy", "scipy", "pandas")

# Where MLflow's asynchronous logging reports a batch it could not store (and only there)
ASYNC_LOG = logging.getLogger("mlflow.utils.async_logging.async_logging_queue")


class TrackingServerError(JobError):
    """The MLflow tracking server could not be reached or refused a request."""


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
    ui_url = setting("MLSTACK_MLFLOW_URL")
    if not ui_url:
        return None
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def open_line(run: Any) -> str:
    """The line entry points print to lead the user to ``run`` (an ``mlflow.ActiveRun``)."""
    url = run_url(run.info.experiment_id, run.info.run_id)
    return f"open: {url}" if url else "open it at the MLflow URL that 'make urls' prints"


def run_user() -> str:
    """Who runs the job: the host user compose passes as ``USER`` (``MLSTACK_USER`` in .env),
    also under a UID without an entry in the image's /etc/passwd."""
    try:
        return getpass.getuser()
    except OSError:
        return f"uid-{os.getuid()}"


class _FailedBatches(logging.Handler):
    """Collects the errors MLflow's asynchronous logging reports only in its log: a batch of
    metrics, parameters or tags the server did not take."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def start_run(
    run_name: str | None = None, experiment: str | None = None, nested: bool = False
) -> Iterator[Any]:
    """A run in ``experiment`` (default: ``MLFLOW_EXPERIMENT_NAME``) that records its user
    ("Created by" in the UI); ended FINISHED, or FAILED when the block raises. ``nested``: a
    child of the active run.

    With asynchronous logging (``MLFLOW_ENABLE_ASYNC_LOGGING``, on in jobs), the run waits at
    its end until every value logged in the block is stored, also when the block raises.

    Yields:
        The ``mlflow.ActiveRun``.

    Raises:
        mlflow.exceptions.MlflowException: when the server refuses to create the run.
        mlflow.exceptions.MlflowException: also when values logged asynchronously in the block
            were not stored (the run is then marked FAILED).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    name = experiment or setting("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
    try:
        mlflow.set_experiment(name)
    except MlflowException as error:
        # Jobs started together race to create a new experiment: the losers use the winner's
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        mlflow.set_experiment(name)
    # What MLflow reads where no experiment is active (the subprocesses it starts, e.g. to infer
    # a model's requirements): this one, not project.env's, which may not exist yet and which
    # jobs started together would all try to create
    os.environ["MLFLOW_EXPERIMENT_NAME"] = name
    run = mlflow.start_run(run_name=run_name, nested=nested, tags={"mlflow.user": run_user()})
    failed = _FailedBatches()
    ASYNC_LOG.addHandler(failed)
    try:
        yield run
        # Wait for the values queued by asynchronous logging; a failed batch is only logged
        mlflow.flush_async_logging()
    except BaseException:
        # Mark the run failed if the server still answers; the error itself is what matters
        with contextlib.suppress(Exception):
            mlflow.end_run(status="FAILED")
        raise
    finally:
        ASYNC_LOG.removeHandler(failed)
    if failed.messages:
        with contextlib.suppress(Exception):
            mlflow.end_run(status="FAILED")
        # MLflow's own words, so that a job says "stopped answering" for a server that went away
        raise MlflowException(
            f"{len(failed.messages)} batch(es) of the run's logged values were not stored: "
            f"{failed.messages[0].splitlines()[0]}"
        )
    mlflow.end_run()


def log_dataset(dataset: Any, context: str = "training", attempts: int = 3) -> None:
    """Log a data set (``mlflow.data.from_pandas(...)``) as an input of the active run.

    Two runs that log the same data set at the same moment race in the tracking server, and
    the loser gets a unique-constraint error (the row the winner just wrote; SQLite's or
    PostgreSQL's words): retrying links the run to that row.

    Raises:
        mlflow.exceptions.MlflowException: when the server refuses for another reason, or
            ``attempts`` times.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    for attempt in range(1, attempts + 1):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except MlflowException as error:
            raced = any(words in str(error) for words in DATASET_RACE)
            if not raced or attempt == attempts:
                raise


def model_requirements(types: list[str]) -> list[str]:
    """The pip requirements of a scikit-learn model, pinned at the versions installed here: the
    :data:`PREDICT_PACKAGES` and the installed distributions of the model's other types' modules
    (a custom transformer's package, say), in name order.

    MLflow would infer them from every module imported while the model loads, and loading
    imports scikit-learn's optional helpers when they are installed (pytest, dask, rich): 26 MB
    and about 0.2 s of start in a release image, for nothing a prediction uses.

    Args:
        types: the dotted names of types in the model (``skops.io.get_untrusted_types``).
    """
    from importlib import metadata

    packages = metadata.packages_distributions()
    names = set(PREDICT_PACKAGES)
    for name in types:
        names.update(packages.get(name.split(".")[0], ()))
    return [f"{name}=={metadata.version(name)}" for name in sorted(names, key=str.lower)]


def log_sklearn_model(
    model: Any, x_train: Any, input_example: Any, registered_model_name: str | None = None
) -> Any:
    """Log a fitted scikit-learn model to the active run, with a signature inferred from
    ``x_train`` (shape (rows, features)) and its predictions, its requirements
    (:func:`model_requirements`), and a sample of ``x_train`` (at
    most :data:`REFERENCE_ROWS` rows) as the model's reference data (:data:`REFERENCE_FILE` among
    its files), which monitoring compares served requests with.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri``, ``model_id``, ``registered_model_version``, ...).

    Raises:
        mlflow.exceptions.MlflowException: when the server refuses the model.
    """
    import mlflow
    import pandas as pd
    import skops.io
    from mlflow.models import infer_signature

    # MLflow saves scikit-learn models with skops, which loads only the types it is told to
    # trust: declare exactly the types of this model, which we built ourselves
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(x_train, model.predict(x_train)),
        input_example=input_example,
        skops_trusted_types=trusted,
        pip_requirements=model_requirements(trusted),
        registered_model_name=registered_model_name,
    )
    features = x_train if isinstance(x_train, pd.DataFrame) else pd.DataFrame(x_train)
    sample = features.sample(n=min(len(features), REFERENCE_ROWS), random_state=0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / REFERENCE_FILE
        sample.to_parquet(path, index=False)
        mlflow.MlflowClient().log_model_artifact(info.model_id, str(path))
    return info


def log_candidates(results: Any, experiment: str | None = None) -> list[str]:
    """Log each candidate of a search as a child run of the active run, named
    ``candidate-<i>``: its parameters and its cross-validated metrics.

    Args:
        results: one row per candidate, as ``model.cross_validate_grid`` returns it: a
            ``params`` column (dicts) and numeric metric columns (``cv_accuracy``, ...).
        experiment: the experiment of the active run (default: ``MLFLOW_EXPERIMENT_NAME``).

    Returns:
        The child runs' ids, in the order of ``results``' rows.

    Raises:
        mlflow.exceptions.MlflowException: when the server refuses a run.
    """
    import mlflow

    run_ids = []
    for index, row in enumerate(results.to_dict(orient="records")):
        params = row.pop("params")
        with start_run(run_name=f"candidate-{index}", experiment=experiment, nested=True) as child:
            mlflow.log_params(params)
            mlflow.log_metrics({name: float(value) for name, value in row.items()})
        run_ids.append(child.info.run_id)
    return run_ids


def model_run_params(model_uri: str, names: Sequence[str], otherwise: str) -> dict[str, str]:
    """The parameters ``names`` of the run that logged the model at ``model_uri`` (any form
    MLflow takes: ``models:/<name>/<version>``, ``runs:/<run id>/model``, ...), as strings.

    Args:
        otherwise: what the user can do instead when the run lacks one, the end of the error.

    Raises:
        JobError: the model is not found (one line), or its run does not record every name.
    """
    import mlflow

    with failure(f"cannot find the model {model_uri}"):
        run_id = mlflow.models.get_model_info(model_uri).run_id
        params = mlflow.get_run(run_id).data.params if run_id else {}
    if not set(names) <= set(params):
        raise JobError(f"the run of {model_uri} does not record {' and '.join(names)}; {otherwise}")
    return {name: params[name] for name in names}


def error_message(error: BaseException) -> str:
    """The one line that says what went wrong: MLflow wraps its clearest message ("Model is
    missing inputs ['alcohol']") in longer ones, so the innermost MLflow error's first line,
    else ``error``'s own."""
    from mlflow.exceptions import MlflowException

    innermost, seen = error, set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, MlflowException):
            innermost = cause
        cause = cause.__cause__ or cause.__context__
    lines = str(innermost).strip().splitlines()
    return lines[0] if lines else type(innermost).__name__


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


def server_gone(error: BaseException) -> bool:
    """Whether ``error`` means the tracking server stopped answering (MLflow's own message for
    this is a long urllib3 retry trace)."""
    from requests import RequestException

    return isinstance(error, RequestException) or "Max retries exceeded" in str(error)


def store_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the tracking server answers but its backend store does not (HTTP
    503: the database is down or restarting), after the client's retries."""
    from mlflow.exceptions import MlflowException

    text = str(error)
    if "too many 503 error responses" in text:
        return True
    return isinstance(error, MlflowException) and error.error_code == "TEMPORARILY_UNAVAILABLE"


@contextlib.contextmanager
def failure(doing: str) -> Iterator[None]:
    """Turn an MLflow or file error inside the block into a one-line :class:`JobError`,
    ``"<doing>: <what MLflow said>"``; a full disk or a server that went away passes through
    (:func:`mlstack.jobs.run_job` says those), and so does a lost backend store."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as error:
        if disk_full(error) or server_gone(error) or store_unavailable(error):
            raise
        raise JobError(f"{doing}: {error_message(error)}") from None
