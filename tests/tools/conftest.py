"""Fixtures of the tools tests: the Dev Containers CLI installed from npm into the session's
temporary folder (project copies come from tests/conftest.py's new_project)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import run

# The Dev Containers CLI the tests run (npm package @devcontainers/cli)
DEVCONTAINER_CLI_VERSION = "0.89.0"


@pytest.fixture(scope="session")
def devcontainer_cli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``devcontainer`` command of @devcontainers/cli, installed with npm into a temporary
    folder (never into the project).

    Raises:
        pytest.fail.Exception: when Node.js >= 20 or npm is missing.
        AssertionError: when the install fails.
    """
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.fail("the Dev Containers test needs Node.js >= 20 and npm; install them")
    major = run([node, "--version"]).stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < 20:
        pytest.fail(f"the Dev Containers CLI needs Node.js >= 20, not {major}; upgrade Node.js")
    prefix = tmp_path_factory.mktemp("devcontainers-cli")
    result = run(
        [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"@devcontainers/cli@{DEVCONTAINER_CLI_VERSION}",
        ],
        cwd=prefix,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return prefix / "node_modules" / ".bin" / "devcontainer"
