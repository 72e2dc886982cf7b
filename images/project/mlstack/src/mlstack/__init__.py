"""mlstack: the stack's plumbing for a project's jobs and notebooks, so that they read as ML.

Installed in the stack's images (jobs, notebooks, Dask workers); a stack upgrade rebuilds it,
while the project's own package (``src/``) keeps only its data, features and model.

- :func:`job` turns a function with click options into a job's command line.
- :func:`start_run`, :func:`log_dataset`, :func:`log_sklearn_model`, :func:`log_candidates`,
  :func:`open_line`: MLflow runs as the stack's jobs log them (:mod:`mlstack.tracking`).
- :func:`evaluate_classifier`, :func:`compare_with_baseline`, :func:`timed`: evaluation, the
  baseline gate, timings; :func:`registered_version`, :func:`alias_version`,
  :func:`set_alias`: model versions and their aliases (:mod:`mlstack.evaluation`).
- :mod:`mlstack.cluster`: the Dask cluster of `make up WORKERS=N`.
- :mod:`mlstack.monitoring`, :mod:`mlstack.serving`, :mod:`mlstack.release`: a released
  model's image, its server and the drift in what it served.
- :func:`setting`, :func:`number_setting`, :class:`JobError`: settings and one-line errors.
"""

from importlib.metadata import PackageNotFoundError, version

from .evaluation import (
    GATE_METRIC,
    ModelVersion,
    alias_version,
    compare_with_baseline,
    evaluate_classifier,
    registered_version,
    set_alias,
    timed,
)
from .jobs import CommaList, experiment_option, job, logger, run_name_option
from .settings import JobError, load_settings, number_setting, setting
from .tracking import (
    failure,
    log_candidates,
    log_dataset,
    log_sklearn_model,
    model_run_params,
    open_line,
    start_run,
)

try:
    # The stack's version, which the image build writes into the installed package
    __version__: str | None = version("mlstack")
except PackageNotFoundError:
    # Imported from the source tree (the host's unit tests, tests/package)
    __version__ = None

__all__ = [
    "GATE_METRIC",
    "CommaList",
    "JobError",
    "ModelVersion",
    "alias_version",
    "compare_with_baseline",
    "evaluate_classifier",
    "experiment_option",
    "failure",
    "job",
    "load_settings",
    "log_candidates",
    "log_dataset",
    "log_sklearn_model",
    "logger",
    "model_run_params",
    "number_setting",
    "open_line",
    "registered_version",
    "run_name_option",
    "set_alias",
    "setting",
    "start_run",
    "timed",
]
