"""Running other programs (docker, git) from the host commands, and the one way a command fails:
:class:`Failure`, shown as one ``error: ...`` line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

# The repository: every command runs from here
ROOT = Path(__file__).resolve().parent.parent.parent
# The user's project: everything in it is theirs (a stack upgrade never changes it); the
# containers see only it, at /project
PROJECT = ROOT / "project"
# What the stack writes into the project for the containers (the host's URLs, Dask's client
# settings): runtime files, ignored by git (project/.gitignore)
RUNTIME = PROJECT / ".mlstack"


class Failure(Exception):
    """A command cannot go on: ``str(self)`` is the one line the user reads after ``error: ``,
    ``status`` the exit status (2: a wrong argument, 1: anything else)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def say(message: str, err: bool = False) -> None:
    """Print one line for the user, on stdout or (``err``) stderr, flushed at once so it keeps
    its place among the lines of the programs run beside it."""
    stream = sys.stderr if err else sys.stdout
    print(message, file=stream, flush=True)


def run(
    args: Sequence[str],
    check: bool = True,
    capture: bool = False,
    stdin: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    quiet: bool = False,
    stdout=None,
) -> subprocess.CompletedProcess:
    """Run a program in the project folder, its output on the terminal unless ``capture`` (then
    in ``.stdout`` and ``.stderr``, text) or ``quiet`` (discarded).

    Raises:
        Failure: ``check`` and a non-zero exit (the program has said why above; the status is
            its own), or the program is not installed.
    """
    options = {}
    if capture:
        options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    elif quiet:
        options = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    elif stdout is not None:
        options = {"stdout": stdout}
    try:
        result = subprocess.run(
            list(args),
            cwd=str(ROOT),
            env=None if env is None else dict(env),
            input=stdin,
            text=True,
            check=False,
            **options,
        )
    except FileNotFoundError:
        raise Failure(f"{args[0]} is not installed or not on PATH")
    if check and result.returncode != 0:
        raise Failure("", status=result.returncode)
    return result


def output(args: Sequence[str], env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """A program's standard output with the trailing newline removed, or None when it fails
    (or is not installed); its stderr is discarded."""
    try:
        result = run(args, check=False, capture=True, env=env)
    except Failure:
        return None
    return result.stdout.rstrip("\n") if result.returncode == 0 else None


def compose(*args: str, **options) -> subprocess.CompletedProcess:
    """``docker compose ARGS`` in the project folder (see :func:`run` for the options)."""
    return run(["docker", "compose", *args], **options)


def docker(*args: str, **options) -> subprocess.CompletedProcess:
    """``docker ARGS`` (see :func:`run` for the options)."""
    return run(["docker", *args], **options)
