"""The jobs' one logging configuration: console plus a rotating file under the project's logs/.

:func:`mlstack.job` calls :func:`setup_logging` once at start; the handlers, formats and file
size live in this package's ``logging.yaml``, the console level in ``LOG_LEVEL``
(``env/stack.env``)."""

from __future__ import annotations

import logging
import logging.config
import os
from pathlib import Path
from string import Template

import yaml

from .settings import project_dir

CONFIG_FILE = Path(__file__).resolve().parent / "logging.yaml"


def setup_logging(name: str) -> logging.Logger:
    """Configure logging from ``logging.yaml`` and return the logger called ``name``.

    Relative file names in the configuration are taken from the project folder
    (:func:`mlstack.settings.project_dir`), whose folders (``logs/``) are created when missing.

    Args:
        name: the job's logger name (for example ``"train"``).

    Raises:
        ValueError: when ``LOG_LEVEL`` is not a level name logging knows (DEBUG, INFO, ...).
        OSError: when the log folder cannot be created or written.
    """
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"LOG_LEVEL={level} is not a logging level (DEBUG, INFO, WARNING, ...)")
    config = yaml.safe_load(Template(CONFIG_FILE.read_text()).substitute(LOG_LEVEL=level))
    top = project_dir()
    for handler in config["handlers"].values():
        if "filename" in handler:
            path = top / handler["filename"]
            path.parent.mkdir(parents=True, exist_ok=True)
            handler["filename"] = str(path)
    logging.config.dictConfig(config)
    return logging.getLogger(name)
