"""The project's settings, as jobs and notebooks read them.

Settings come from the environment (compose passes the stack's env/stack.env and the project's
project.env to the containers), else from those files (on the host: the project folder and the
stack's checkout around it), then from the project's ``.mlstack/urls.env``, which `make up`
writes with the host's URLs.
"""

from __future__ import annotations

import os
from pathlib import Path

# MLflow's own experiment, where runs go when MLFLOW_EXPERIMENT_NAME is unset
DEFAULT_EXPERIMENT = "Default"


class JobError(RuntimeError):
    """A failure the user can act on, said in one line (a job prints ``error: ...``). A
    project's own errors of that kind (bad data, say) subclass it."""


def project_dir() -> Path:
    """The project folder: ``MLSTACK_PROJECT_DIR`` when set, else the nearest folder at or above
    the working directory that holds ``project.env`` (``/project`` in the containers, where jobs
    start; ``project/`` of the stack's checkout on the host), else the working directory."""
    if configured := os.environ.get("MLSTACK_PROJECT_DIR"):
        return Path(configured)
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "project.env").is_file():
            return folder
    return here


def settings_files() -> tuple[Path, ...]:
    """The files :func:`load_settings` reads, first wins: the stack's settings (``env/stack.env``
    beside the project folder, in the stack's checkout), the project's ``project.env``, then the
    URLs `make up` found on the host (``.mlstack/urls.env``)."""
    top = project_dir()
    return (top.parent / "env" / "stack.env", top / "project.env", top / ".mlstack" / "urls.env")


def load_settings() -> None:
    """Put the settings files' values into ``os.environ``; a variable already set (by compose,
    or by the user) wins."""
    from dotenv import load_dotenv

    for settings in settings_files():
        if os.access(settings, os.R_OK):
            load_dotenv(settings, override=False)


def setting(name: str, default: str | None = None) -> str | None:
    """One setting from the environment (see :func:`load_settings`), or ``default`` when unset
    or empty."""
    return os.environ.get(name) or default


def number_setting(name: str, default: float | None = None) -> float:
    """A setting that must be a number (a threshold of project.env, say), or ``default`` when
    unset; without a default, the setting must be there.

    Raises:
        JobError: when the value is not a number, or it is unset and has no default.
    """
    text = setting(name, None if default is None else str(default))
    if text is None:
        raise JobError(f"{name} is not set; set it in project.env")
    try:
        return float(text)
    except ValueError:
        raise JobError(f"{name}={text} is not a number; fix it in project.env") from None
