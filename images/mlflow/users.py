"""The tracking server's user accounts, run by make's user commands (scripts/stackctl/users.py)
in the running mlflow container, as the basic-auth admin (MLFLOW_AUTH_ADMIN_USERNAME and
MLFLOW_AUTH_ADMIN_PASSWORD: only this container holds them), through MLflow's own client of its
auth API at http://127.0.0.1:5000.

    python users.py add NAME        a new user; its password is standard input's first line,
                                    or, when that is empty, a generated one printed once
    python users.py list            every user, one line each (admins marked)
    python users.py remove NAME     the user deleted
    python users.py reset NAME      a new password, as for add
    python users.py grant NAME experiment|model ID PERMISSION
                                    READ, EDIT, MANAGE or NO_PERMISSIONS on an experiment
                                    (by name or ID) or a registered model (by name)

Each command prints one line; a failure is one `error:` line and exit 1 (2 for bad usage).
"""

from __future__ import annotations

import os
import secrets
import sys

URL = "http://127.0.0.1:5000"
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
# MLflow's sign-up form asks for 12 characters or more; its API does not check
MIN_PASSWORD = 12


class UsageError(RuntimeError):
    """A command line or a password the command refuses; its message is the user's one line."""


def client():
    """MLflow's client of the basic-auth API, logged in as the admin (from the environment)."""
    from mlflow.server import get_app_client

    os.environ["MLFLOW_TRACKING_USERNAME"] = os.environ["MLFLOW_AUTH_ADMIN_USERNAME"]
    os.environ["MLFLOW_TRACKING_PASSWORD"] = os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"]
    return get_app_client("basic-auth", tracking_uri=URL)


def new_password() -> tuple[str, bool]:
    """(password, generated): standard input's first line, else 24 random URL-safe characters.

    Raises:
        UsageError: the given password is shorter than MIN_PASSWORD characters.
    """
    given = "" if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
    if not given:
        return secrets.token_urlsafe(18), True
    if len(given) < MIN_PASSWORD:
        raise UsageError(
            f"the password on standard input has {len(given)} characters; give one of "
            f"{MIN_PASSWORD} or more, or none for a generated one"
        )
    return given, False


def said_password(name: str, password: str, generated: bool) -> str:
    """The end of add's and reset's line: the generated password, shown this once."""
    if generated:
        return f"; password (shown once, give it to {name}): {password}"
    return "; password from standard input"


def add(name: str) -> str:
    """Create user ``name`` (not an admin); its one line."""
    password, generated = new_password()
    client().create_user(name, password)
    return f"users: added {name}" + said_password(name, password, generated)


def reset(name: str) -> str:
    """Give user ``name`` a new password; its one line."""
    password, generated = new_password()
    auth = client()
    auth.get_user(name)
    auth.update_user_password(name, password)
    return f"users: new password for {name}" + said_password(name, password, generated)


def remove(name: str) -> str:
    """Delete user ``name`` (never the admin); its one line."""
    if name == os.environ["MLFLOW_AUTH_ADMIN_USERNAME"]:
        raise UsageError(f"{name} is the admin make's commands act as; it stays")
    client().delete_user(name)
    return (
        f"users: removed {name}; a request of theirs is refused from now on (within a minute "
        "on the server's other workers)"
    )


def listed() -> str:
    """Every user, ``name`` or ``name (admin)``, one per line."""
    # The auth client has no call for it (MLflow 3.17); its own request helper does the rest
    users = client()._request("/api/2.0/mlflow/users/list", "GET").get("users", [])
    return "\n".join(
        user["username"] + (" (admin)" if user.get("is_admin") else "")
        for user in sorted(users, key=lambda each: each["username"])
    )


def grant(name: str, kind: str, resource: str, permission: str) -> str:
    """Give user ``name`` ``permission`` on an experiment (name or ID) or a registered model.

    Raises:
        UsageError: an unknown kind or permission, or no such experiment.
    """
    permission = permission.upper()
    if permission not in PERMISSIONS:
        raise UsageError(f"permission {permission} is none of {', '.join(PERMISSIONS)}")
    if kind not in ("experiment", "model"):
        raise UsageError(f"{kind} is neither experiment nor model")
    auth = client()
    auth.get_user(name)
    if kind == "experiment":
        from mlflow import MlflowClient

        os.environ["MLFLOW_TRACKING_URI"] = URL
        tracking = MlflowClient(URL)
        experiment = tracking.get_experiment_by_name(resource)
        if experiment is None and resource.isdigit():
            experiment = tracking.get_experiment(resource)
        if experiment is None:
            raise UsageError(f"no experiment named {resource}")
        auth.grant_user_permission(name, "experiment", experiment.experiment_id, permission)
        return f"users: {name} has {permission} on experiment {experiment.name}"
    from mlflow import MlflowClient

    MlflowClient(URL).get_registered_model(resource)
    auth.grant_user_permission(name, "registered_model", resource, permission)
    return f"users: {name} has {permission} on registered model {resource}"


COMMANDS = {"add": (add, 1), "list": (listed, 0), "remove": (remove, 1), "reset": (reset, 1)}
COMMANDS["grant"] = (grant, 4)


def reason(error: Exception) -> str:
    """One line for an MLflow error: its message, without MLflow's response dump."""
    message = getattr(error, "message", None) or str(error)
    return " ".join(message.split())[:300]


def main(argv: list[str]) -> int:
    """Run one command line (see the module's docstring); returns the exit status."""
    if not argv or argv[0] not in COMMANDS or len(argv) - 1 != COMMANDS[argv[0]][1]:
        print(f"usage: users.py {' | '.join(COMMANDS)} ... (see its docstring)", file=sys.stderr)
        return 2
    if os.environ.get("MLSTACK_MLFLOW_AUTH") != "true":
        print(
            "error: this tracking server runs without auth, so it has no users; set "
            "MLSTACK_MLFLOW_AUTH=true in .env (or make up TEAM=1) and make up first",
            file=sys.stderr,
        )
        return 1
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    try:
        print(COMMANDS[argv[0]][0](*argv[1:]))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (MlflowException, RequestException) as error:
        code = getattr(error, "error_code", "")
        if code == "RESOURCE_ALREADY_EXISTS":
            message = f"user {argv[1]} exists already; make user-reset NAME={argv[1]} gives a new password"
        elif code == "RESOURCE_DOES_NOT_EXIST":
            message = f"{reason(error)} ('make users' lists the users)"
        else:
            message = reason(error)
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
