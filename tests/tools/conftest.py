"""Fixtures of the tools tests: the Dev Containers CLI that make installs with the test tools
(project copies come from tests/conftest.py's new_project)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

# The Dev Containers CLI, which make installs with the test tools (Makefile: DEVCONTAINER_CLI)
DEVCONTAINER = REPO_ROOT / ".venv" / "node" / "node_modules" / ".bin" / "devcontainer"


@pytest.fixture(scope="session")
def devcontainer_cli() -> Path:
    """The ``devcontainer`` command of @devcontainers/cli, from the test tools' folder.

    Raises:
        pytest.fail.Exception: when it is not installed (Node.js >= 20 and npm missing when
            make set up .venv).
    """
    if not DEVCONTAINER.exists():
        pytest.fail(
            "the Dev Containers CLI is not installed: install Node.js >= 20 and npm, then "
            "rm .venv/.installed and run make test again"
        )
    return DEVCONTAINER
