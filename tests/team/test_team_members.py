"""A team, not a shared password: the admin manages members with make's user commands (no
password on any command line, one line each), members log in as themselves with MLflow's
permissions, and no container but the tracking server holds the admin's password."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import requests

from tests.helpers import secret_holders
from tests.team.helpers import CommandLineWatch, TeamStack
from tests.team.test_team_users import outside_env

# A host client with MLflow's defaults acting as a member: reads the stack user's run, then
# tries to delete it (the run's id in argv[1]); prints the outcome
MEMBER_CLIENT = """
import sys
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
client = MlflowClient()
print("read", client.get_run(sys.argv[1]).info.run_name)
try:
    client.set_tag(sys.argv[1], "touched-by", "bob")
    print("tagged")
except MlflowException as error:
    print("refused", error.get_http_status_code())
"""


def make(stack: TeamStack, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """make in the team stack's folder with ``stdin`` as standard input (empty: nothing piped)."""
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=stack.directory, env=stack.env,
        input=stdin, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def as_member(stack: TeamStack, user: str, password: str, run_id: str) -> list[str]:
    """MEMBER_CLIENT's lines, logged in as ``user``."""
    env = outside_env(stack) | {
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": password,
    }
    result = subprocess.run(
        [sys.executable, "-c", MEMBER_CLIENT, run_id], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.splitlines()


def errors(result: subprocess.CompletedProcess) -> list[str]:
    """The ``error:`` lines of a command's stderr."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_the_admin_adds_grants_resets_and_removes_members_without_a_password_on_a_command_line(
    team_stack: TeamStack,
):
    trained = team_stack.compose(
        "run", "--rm", "bash", "python", "train.py", "--experiment", "members",
        "--n-estimators", "5", "--curve-steps", "1", "--run-name", "stack-user-run",
        timeout=900,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    run_id = re.search(r"^run ([0-9a-f]{32}) logged", trained.stdout, re.MULTILINE)[1]
    # The run is the stack user's (MLSTACK_USER), not the admin's
    got = requests.get(
        f"{team_stack.mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": run_id},
        auth=team_stack.credentials, timeout=30,
    ).json()["run"]  # fmt: skip
    assert got["info"]["user_id"] == team_stack.settings()["MLSTACK_USER"] != "admin"

    piped = "bob-chose-this-long-one"
    with CommandLineWatch([*team_stack.secrets().values(), piped]) as watch:
        added = make(team_stack, "user-add", "NAME=bob")
        again = make(team_stack, "user-add", "NAME=bob")
        reset = make(team_stack, "user-reset", "NAME=bob", stdin=piped + "\n")
    assert watch.samples > 0 and watch.leaks == [], watch.leaks
    # A generated password, shown this once
    assert added.returncode == 0, added.stderr
    shown = re.fullmatch(
        r"users: added bob; password \(shown once, give it to bob\): (\S{20,})\n", added.stdout
    )
    assert shown, added.stdout
    assert again.returncode != 0 and len(errors(again)) == 1, again.stderr
    assert (
        "bob exists already" in errors(again)[0] and "make user-reset NAME=bob" in errors(again)[0]
    )
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.strip() == "users: new password for bob; password from standard input"
    # The new password works at once: bob reads the stack user's run, may not change it
    assert as_member(team_stack, "bob", piped, run_id) == ["read stack-user-run", "refused 403"]
    granted = make(team_stack, "user-grant", "NAME=bob", "EXPERIMENT=members", "PERMISSION=EDIT")
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout.strip() == "users: bob has EDIT on experiment members"
    assert as_member(team_stack, "bob", piped, run_id)[1] == "tagged"

    for bad, expected in (
        (("user-add", "NAME=bo b"), "is not a user name"),
        (("user-add",), "say which user"),
        (("user-remove", "NAME=nobody"), "users"),
        (("user-grant", "NAME=bob", "PERMISSION=EDIT"), "say what to grant on"),
        (("user-grant", "NAME=bob", "EXPERIMENT=members", "PERMISSION=ALL"), "is none of"),
        (("user-add", "NAME=carol"), "12 or more"),
    ):
        result = make(team_stack, *bad, stdin="short\n" if "NAME=carol" in bad else "")
        assert result.returncode != 0 and len(errors(result)) == 1, (bad, result.stderr)
        assert expected in errors(result)[0], (bad, errors(result))
    assert "carol" not in make(team_stack, "users").stdout.split()

    removed = make(team_stack, "user-remove", "NAME=bob")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.startswith("users: removed bob;"), removed.stdout
    # Refused within the documented minute (a login is remembered that long per worker)
    deadline = time.monotonic() + 75
    while True:
        status = requests.get(
            f"{team_stack.mlflow_url}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1}, auth=("bob", piped), timeout=30,
        ).status_code  # fmt: skip
        if status == 401 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert status == 401
    assert "bob" not in make(team_stack, "users").stdout.split()


def test_no_container_but_the_tracking_server_holds_the_admin_password(team_stack: TeamStack):
    admin_password = team_stack.settings()["MLFLOW_ADMIN_PASSWORD"]
    assert team_stack.container("jupyter").status == "running"
    assert secret_holders(team_stack.name, admin_password) == {"mlflow"}
    # The runner too, as a job sees it
    job = team_stack.compose(
        "run", "--rm", "bash", "python", "-c",
        "import os, pathlib; print(os.environ.get('MLFLOW_TRACKING_PASSWORD', ''));"
        "print(pathlib.Path('/proc/1/environ').read_text())",
    )  # fmt: skip
    assert job.returncode == 0, job.stderr[-2000:]
    assert admin_password not in job.stdout
    assert team_stack.stack_credentials[1] in job.stdout
