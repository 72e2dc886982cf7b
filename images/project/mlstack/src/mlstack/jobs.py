"""Jobs: a project's entry points (train.py, ...) as commands. :func:`job` turns an ordinary
function with click options into one: settings loaded first, the project's logging, the
tracking-server check, MLflow's asynchronous logging on, and every failure the user can act on
said in one ``error: ...`` line with exit status 1 (a bad option: click's message, status 2)."""

from __future__ import annotations

import importlib.abc
import importlib.util
import inspect
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import click

from .settings import DEFAULT_EXPERIMENT, JobError, load_settings, setting
from .tracking import disk_full, error_message, server_gone, store_unavailable

# Jobs log metrics, parameters and tags asynchronously, sent in batches (up to 1,000 values per
# request, once a second): a training loop does not wait for the server. Without the buffering,
# MLflow sends each value in a request of its own, no faster than synchronous logging. Either is
# a setting: MLFLOW_ENABLE_ASYNC_LOGGING=false in project.env logs synchronously.
ASYNC_LOGGING = {
    "MLFLOW_ENABLE_ASYNC_LOGGING": "true",
    "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS": "1",
}
# Modules MLflow's client tries to import on every request (its Databricks checks). Asynchronous
# logging sends requests from a worker thread, and Python asks each import finder while holding
# its global import lock: MLflow's finder there waits for MLflow's import-hook lock, which the
# job's own thread may hold while it imports (mlflow.evaluate registering its evaluators), and
# both wait forever (evaluate.py hung so; py-spy showed the two threads). Those that are not
# installed fail at once, ahead of MLflow's finder (see _NotInstalled).
PROBED_MODULES = ("dbruntime", "pyspark", "IPython")


class _NotInstalled(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path``: an import of one of ``names`` (or of a submodule) raises
    ModuleNotFoundError before any other finder runs, so before MLflow's import-hook finder and
    its lock. ``sys.modules`` stays as it was (MLflow reads it to tell what is installed)."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


class JobCommand(click.Command):
    """A click command that loads the project's settings before it reads its options (so an
    option's ``envvar`` sees project.env) and sets :data:`ASYNC_LOGGING` where the settings
    do not (:func:`mlstack.start_run` waits for the values when the run ends), and makes an
    import of the :data:`PROBED_MODULES` that are not installed fail at once."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        load_settings()
        for name, value in ASYNC_LOGGING.items():
            os.environ.setdefault(name, value)
        # The job prints its own "open:" line with the run's host URL; MLflow's would repeat it
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        missing = {m for m in PROBED_MODULES if importlib.util.find_spec(m) is None}
        if missing and not any(isinstance(f, _NotInstalled) for f in sys.meta_path):
            # MLflow puts its finder first on sys.meta_path when its first import hook is
            # registered, which a job's own imports do at any time (mlflow.evaluate does): have
            # it put there now, with a hook that never runs, so that ours stays ahead of it
            from mlflow.utils.import_hooks import register_post_import_hook

            register_post_import_hook(lambda module: None, "mlstack._never_imported")
            sys.meta_path.insert(0, _NotInstalled(missing))
        return super().main(*args, **kwargs)


def job(function: Callable[..., int | None]) -> click.Command:
    """Make ``function`` a job's command line: its click options (``@click.option`` under this
    decorator) are parsed and passed to it, its docstring's first paragraph is the ``--help``
    text, and its name comes from its file (``train`` for train.py).

    Call the result with no argument (``main()``): it reads ``sys.argv`` and exits with the
    job's status (``function``'s return value, ``None`` meaning 0), 1 after one ``error:`` line
    (see :func:`run_job`), or 2 for a bad option.
    """
    name = Path(inspect.getfile(function)).stem
    summary = (inspect.getdoc(function) or "").split("\n\n")[0]

    def callback(**options: Any) -> None:
        sys.exit(run_job(name, lambda: function(**options)))

    callback.__click_params__ = getattr(function, "__click_params__", [])
    settings = {"show_default": True, "help_option_names": ["-h", "--help"]}
    return click.command(name=name, cls=JobCommand, help=summary, context_settings=settings)(
        callback
    )


class CommaList(click.ParamType):
    """An option's values as one comma-separated word (``--n-estimators 50,100,200``; click has
    no option that takes several words), each converted by ``item``, a click type. With
    ``none_word``, that word stands for ``None`` (e.g. ``none``: no limit).

    Converts to a ``list``; a bad item fails with click's one-line message naming it.
    """

    name = "list"

    def __init__(self, item: click.ParamType, none_word: str | None = None) -> None:
        self.item, self.none_word = item, none_word

    def convert(self, value: Any, param: Any, ctx: Any) -> list[Any]:
        if isinstance(value, list):
            return value
        return [
            None if word.strip().lower() == self.none_word else self.item.convert(word, param, ctx)
            for word in str(value).split(",")
        ]

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return f"{self.item.name.upper()},..."


# The options every job that logs a run has: the experiment (project.env's by default) and
# the run's name
experiment_option = click.option(
    "--experiment", envvar="MLFLOW_EXPERIMENT_NAME", default=DEFAULT_EXPERIMENT,
    show_envvar=True, help="MLflow experiment.",
)  # fmt: skip
run_name_option = click.option("--run-name", help="MLflow run name [default: MLflow picks one]")


def run_job(name: str, work: Callable[[], int | None]) -> int:
    """Run a job's work with the project's logging, after checking the tracking server, and
    turn every failure the user can act on into one ``error: ...`` line.

    Args:
        name: the job's name (``train`` for train.py): its logger, and what to run again.
        work: the job; returns an exit status (``None``: 0).

    Returns:
        The exit status: the job's, or 1 after one ``error:`` line on stderr (also in
        ``logs/jobs.log``) when a setting, the data, the tracking server or the disk fails
        (any :class:`JobError`, the project's own included).
    """
    # MLflow sets its loggers' levels when first imported: import it before the logging
    # configuration, which quiets them to WARNING
    import mlflow  # noqa: F401
    from mlflow.exceptions import MlflowException

    from .logs import setup_logging
    from .tracking import check_tracking_server

    try:
        log = setup_logging(name)
    except (ValueError, OSError) as error:
        print(f"error: cannot set up logging: {error}", file=sys.stderr)
        return 1
    tracking_uri = setting("MLFLOW_TRACKING_URI", "")
    try:
        check_tracking_server(tracking_uri)
        log.info("job started, tracking at %s", tracking_uri)
        return work() or 0
    except JobError as error:
        log.error("error: %s", error)
    except Exception as error:
        if full := disk_full(error):
            where = full.filename or f"the temporary folder {tempfile.gettempdir()}"
            log.error("error: no space left on the device of %s; free some space, retry", where)
        elif store_unavailable(error):
            log.error(
                "error: the MLflow tracking server at %s lost its backend store (HTTP 503: the "
                "database is down or restarting), so the job did not finish; check 'make ps' "
                "and 'make logs', then run %s.py again",
                tracking_uri,
                name,
            )
        elif server_gone(error):
            log.error(
                "error: the MLflow tracking server at %s stopped answering, so the job did not "
                "finish; check 'make ps' and 'make logs', then run %s.py again",
                tracking_uri,
                name,
            )
        elif isinstance(error, MlflowException):
            log.error(
                "error: logging to MLflow at %s failed: %s", tracking_uri, error_message(error)
            )
        else:
            raise
    return 1


def logger(name: str | None = None) -> logging.Logger:
    """The logger of the running job (its name: the job's file name without ``.py``), for the
    messages a job writes besides its results."""
    return logging.getLogger(name or Path(sys.argv[0]).stem or "job")
