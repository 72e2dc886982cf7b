"""The tracking server's user accounts from the host: ``make users``, ``make user-add``,
``make user-remove``, ``make user-reset`` and ``make user-grant``. Each runs the mlflow image's
users.py in the running tracking server's container, which alone holds the admin's password: no
password is on a command line, and a password given on standard input reaches users.py
through its standard input."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Optional, Sequence

from stackctl.proc import ROOT, Failure, output

USERS = "/usr/local/lib/mlstack/users.py"
# What a user's name may be: letters, digits and . _ @ -, starting with a letter or digit (no
# spaces, quotes or slashes: names go into URLs and the server's log)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def checked_name(name: str, command: str) -> str:
    """``name`` when it is a user name :data:`NAME` allows.

    Raises:
        Failure: it is empty or not one (status 2), with the command that works.
    """
    if not name:
        raise Failure(f"say which user: make {command} NAME=ada", status=2)
    if not NAME.match(name):
        raise Failure(
            f"'{name}' is not a user name: letters, digits and . _ @ -, starting with a letter "
            f"or digit (make {command} NAME=ada)",
            status=2,
        )
    return name


def grant_target(experiment: str, model: str) -> tuple:
    """(kind, name) of what user-grant grants on: EXPERIMENT= or MODEL=, exactly one.

    Raises:
        Failure: both or neither given (status 2).
    """
    if bool(experiment) == bool(model):
        raise Failure(
            "say what to grant on, one of: make user-grant NAME=ada EXPERIMENT=<name> "
            "PERMISSION=EDIT, or MODEL=<registered model> instead of EXPERIMENT",
            status=2,
        )
    return ("experiment", experiment) if experiment else ("model", model)


def in_server(*args: str, stdin: Optional[str] = None) -> None:
    """users.py ``args`` in the running mlflow container; its lines go to the terminal.
    ``stdin`` (a password) is its standard input; none: an empty one (a generated password).

    Raises:
        Failure: the tracking server is not running, or users.py failed (its error line is
            above; the status is its own).
    """
    if not output(["docker", "compose", "ps", "--status", "running", "--quiet", "mlflow"]):
        raise Failure("the tracking server is not running; start it with make up")
    done = subprocess.run(
        ["docker", "compose", "exec", "-T", "mlflow", "python", USERS, *args],
        cwd=str(ROOT),
        input=(stdin or "") + "\n",
        text=True,
    )
    if done.returncode != 0:
        raise Failure("", status=done.returncode)


def given_password() -> Optional[str]:
    """A password piped to make (standard input's first line), or None on a terminal or when
    nothing was piped: then users.py generates one."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    line = sys.stdin.readline().rstrip("\r\n")
    return line or None


def users(argv: Sequence[str] = ()) -> None:
    """``make users``: every user of the tracking server, one per line."""
    in_server("list")


def add(argv: Sequence[str] = ()) -> None:
    """``make user-add NAME=``: a new user, with a generated password shown once or the one
    piped in."""
    in_server("add", checked_name(argv[0] if argv else "", "user-add"), stdin=given_password())


def remove(argv: Sequence[str] = ()) -> None:
    """``make user-remove NAME=``: the user deleted."""
    in_server("remove", checked_name(argv[0] if argv else "", "user-remove"))


def reset(argv: Sequence[str] = ()) -> None:
    """``make user-reset NAME=``: a new password, generated or piped in."""
    in_server("reset", checked_name(argv[0] if argv else "", "user-reset"), stdin=given_password())


def grant(argv: Sequence[str]) -> None:
    """``make user-grant NAME= EXPERIMENT=|MODEL= PERMISSION=``: argv is name, experiment,
    model, permission (empty strings for what was not given)."""
    name, experiment, model, permission = (list(argv) + [""] * 4)[:4]
    kind, target = grant_target(experiment, model)
    if not permission:
        raise Failure(
            "say which permission: PERMISSION=READ, EDIT, MANAGE or NO_PERMISSIONS", status=2
        )
    in_server("grant", checked_name(name, "user-grant"), kind, target, permission)
