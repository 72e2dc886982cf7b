"""The team stack as its users meet it: the mode `make up TEAM=1` recorded is what plain
`docker compose` uses; an MLflow client on the host with its default settings logs, downloads
and loads models through the tracking server alone; the object store's internals are closed to
the stack's network; no secret on a command line or in an upgrade error; a regenerated or
hand-written .env reaches the same data (team mode and SQLite with auth); URLs survive
restarts, and a port another program took is replaced with one line.

The tests at the end of this file restart the shared team stack (make down, make up): they run
last in the ``team`` group (file order)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from tests.helpers import (
    restart_docker_daemon,
    scheduler_rows,
    secret_holders,
    wait_for,
    wait_until_healthy,
)
from tests.team.helpers import TEAM_COMPOSE_FILE, TeamStack

CONCURRENT = 8

# A client on the host with MLflow's defaults: only the tracking URI and the credentials come
# from the environment. Each step's seconds are printed as JSON
HOST_CLIENT = """
import json, os, sys, tempfile, time
from pathlib import Path
import mlflow, pandas
from mlflow import MlflowClient

timings = {}
def timed(name, step):
    start = time.monotonic()
    result = step()
    timings[name] = time.monotonic() - start
    return result

scratch = Path(tempfile.mkdtemp())
(scratch / "notes.txt").write_text("logged from the host")
mlflow.set_experiment("host-client")
with mlflow.start_run() as run:
    timed("log_artifact", lambda: mlflow.log_artifact(str(scratch / "notes.txt")))
downloaded = timed("download", lambda: mlflow.artifacts.download_artifacts(
    run_id=run.info.run_id, artifact_path="notes.txt", dst_path=str(scratch / "down")))
assert Path(downloaded).read_text() == "logged from the host"
model = timed("load_model", lambda: mlflow.pyfunc.load_model(f"models:/{sys.argv[1]}/1"))
columns = [spec.name for spec in model.metadata.get_input_schema().inputs]
rows = pandas.DataFrame([[13.0, 2.0, 2.4, 19.0, 100.0, 2.5, 2.5, 0.3, 1.6, 5.0, 1.0, 2.8, 750.0]],
                        columns=columns)
predictions = timed("predict", lambda: model.predict(rows))
print(json.dumps({"timings": timings, "predictions": [int(p) for p in predictions]}))
"""


def outside_env(stack: TeamStack) -> dict[str, str]:
    """The environment of a client outside the stack: PATH and HOME, the tracking URI and the
    admin's credentials, and no other MLflow variable."""
    user, password = stack.credentials
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(stack.directory.parent),
        "MLFLOW_TRACKING_URI": stack.mlflow_url,
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": password,
    }


def printed_urls(output: str) -> dict[str, str]:
    """The URLs make printed: {"MLflow": ..., "Jupyter": ...}."""
    return dict(re.findall(r"^(MLflow|Jupyter):\s+(http\S+)$", output, re.MULTILINE))


def runs_in(stack: TeamStack, experiment: str) -> list[list[str]]:
    """(run id, status) of each run of ``experiment`` in the team store, counted in PostgreSQL."""
    return stack.psql(
        "SELECT r.run_uuid, r.status FROM runs r JOIN experiments e "
        f"ON e.experiment_id = r.experiment_id WHERE e.name = '{experiment}'"
    )


def test_the_first_start_put_no_secret_on_any_command_line(team_stack: TeamStack):
    watch = team_stack.command_line_watch
    assert watch is not None and watch.samples > 20, watch
    assert watch.leaks == [], watch.leaks
    # The watch covered the schema upgrade of the new database (store.py prepare)
    logs = team_stack.compose("logs", "--no-color", "mlflow").stdout
    assert "Creating initial MLflow database tables" in logs or "Running upgrade" in logs, logs


def test_make_up_team_is_remembered_and_plain_compose_runs_use_the_team_store(
    team_stack: TeamStack,
):
    assert f"COMPOSE_FILE={TEAM_COMPOSE_FILE}" in (team_stack.directory / ".env").read_text()
    server = team_stack.container("mlflow").id
    command = ["docker", "compose", "run", "--rm", "bash", "python", "train.py"]
    options = ["--experiment", "plain-compose", "--n-estimators", "10", "--curve-steps", "2"]
    env = {k: v for k, v in team_stack.env.items() if not k.startswith("COMPOSE_")}
    jobs = [
        subprocess.Popen(
            command + options,
            cwd=team_stack.directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(CONCURRENT)
    ]
    outputs = [job.communicate(timeout=900)[0] for job in jobs]
    for job, output in zip(jobs, outputs):
        assert job.returncode == 0, output[-3000:]
        assert "orphan" not in output.lower() and "Recreat" not in output, output[-3000:]
    # The same server container, never recreated in the other mode
    assert team_stack.container("mlflow").id == server
    runs = runs_in(team_stack, "plain-compose")
    assert len(runs) == CONCURRENT and all(status == "FINISHED" for _, status in runs), runs
    # Each job's link is the server's remembered host URL
    assert all(f"open: {team_stack.mlflow_url}/#/experiments/" in output for output in outputs)


def test_an_mlflow_client_on_the_host_with_default_settings_works(team_stack: TeamStack):
    trained = team_stack.compose(
        "run", "--rm", "bash", "python", "train.py", "--experiment", "host-model",
        "--n-estimators", "10", "--curve-steps", "2", "--register-model", "host-wine",
        timeout=900,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    # The server advertises no presigned or multipart transfer: clients never get a URL of
    # the object store
    info = requests.get(
        f"{team_stack.mlflow_url}/api/3.0/mlflow/server-info",
        auth=team_stack.credentials,
        timeout=30,
    ).json()
    assert not info["multipart_downloads_enabled"] and not info["multipart_uploads_enabled"], info
    result = subprocess.run(
        [sys.executable, "-c", HOST_CLIENT, "host-wine"],
        env=outside_env(team_stack),
        cwd=team_stack.directory.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(answer["timings"]) == {"log_artifact", "download", "load_model", "predict"}
    assert all(seconds < 30 for seconds in answer["timings"].values()), answer
    assert answer["predictions"][0] in (0, 1, 2), answer


def test_the_object_store_answers_on_the_network_only_through_its_s3_gateway(
    team_stack: TeamStack,
):
    probe = textwrap.dedent("""
        import json, socket, urllib.error, urllib.request
        found = {}
        for port in (8888, 9333, 8080, 18888, 19333):
            try:
                socket.create_connection(("s3", port), timeout=5).close()
                found[port] = "open"
            except ConnectionRefusedError:
                found[port] = "refused"
        try:
            urllib.request.urlopen("http://s3:8333/mlflow/", timeout=10)
            found[8333] = 200
        except urllib.error.HTTPError as error:
            found[8333] = error.code
        print(json.dumps(found))
    """)
    result = team_stack.compose("exec", "-T", "jupyter", "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {
        "8888": "refused",
        "9333": "refused",
        "8080": "refused",
        "18888": "refused",
        "19333": "refused",
        "8333": 403,
    }


def test_a_failed_schema_upgrade_prints_no_password(team_stack: TeamStack):
    # A database stamped one revision behind this MLflow's, without its tables: the upgrade
    # fails on the first statement
    head = team_stack.compose(
        "exec", "-T", "mlflow", "cat", "/opt/mlstack/schema-head"
    ).stdout.strip()
    previous = team_stack.compose(
        "exec", "-T", "mlflow", "python", "-c",
        "import sys; sys.path.insert(0, '/usr/local/lib/mlstack'); import store; "
        f"print(store.schema_revisions().get_revision('{head}').down_revision)",
    ).stdout.strip()  # fmt: skip
    assert re.fullmatch(r"[0-9a-f]{12}", previous), previous
    team_stack.psql("DROP DATABASE IF EXISTS upgrade_failure", database="postgres")
    team_stack.psql("CREATE DATABASE upgrade_failure OWNER mlflow", database="postgres")
    team_stack.psql(
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
        f"INSERT INTO alembic_version VALUES ('{previous}'); "
        "ALTER TABLE alembic_version OWNER TO mlflow",
        database="upgrade_failure",
    )
    password = team_stack.secrets()["POSTGRES_PASSWORD"]
    env = team_stack.env | {
        "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg://mlflow:{password}@postgres:5432/upgrade_failure"
    }
    try:
        # The URI reaches the container through the environment (-e NAME), as start.sh has it
        result = subprocess.run(
            ["docker", "compose", "run", "--rm", "--no-deps", "-e", "MLFLOW_BACKEND_STORE_URI",
             "mlflow", "python", "/usr/local/lib/mlstack/store.py", "prepare"],
            cwd=team_stack.directory,
            env={k: v for k, v in env.items() if not k.startswith("COMPOSE_")},
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        team_stack.psql("DROP DATABASE IF EXISTS upgrade_failure", database="postgres")
    output = result.stdout + result.stderr
    assert result.returncode == 3, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "schema upgrade" in errors[0], output[-3000:]
    assert password not in output


# From here on, the shared team stack is restarted


def test_urls_survive_make_down_and_up_and_a_port_another_program_took_is_replaced_in_one_line(
    team_stack: TeamStack,
):
    before = printed_urls(team_stack.make("urls").stdout)
    assert before["MLflow"] == team_stack.mlflow_url
    assert team_stack.make("down").returncode == 0
    taken = int(team_stack.mlflow_url.rsplit(":", 1)[1])
    with socket.socket() as squatter:
        # As servers do: connections of the test's clients may still linger in TIME_WAIT
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        up = team_stack.make("up")
    assert up.returncode == 0, up.stderr[-3000:]
    after = printed_urls(up.stdout)
    # Jupyter's URL, token included, is the one printed before
    assert after["Jupyter"] == before["Jupyter"]
    # MLflow's port was taken meanwhile: a new one, said in one line
    said = [line for line in up.stdout.splitlines() if line.startswith("ports:")]
    assert len(said) == 1 and f"127.0.0.1:{taken} is taken" in said[0], up.stdout
    team_stack.mlflow_url = after["MLflow"]
    assert team_stack.mlflow_url != f"http://127.0.0.1:{taken}"
    assert requests.get(f"{team_stack.mlflow_url}/health", timeout=10).status_code == 200


def test_a_hand_written_env_reaches_the_same_team_data_under_new_secrets(team_stack: TeamStack):
    auth = team_stack.credentials
    api = f"{team_stack.mlflow_url}/api/2.0/mlflow"
    models = requests.get(f"{api}/registered-models/search", auth=auth, timeout=60).json()
    runs = team_stack.psql("SELECT run_uuid FROM runs ORDER BY run_uuid")
    old = team_stack.secrets()
    assert team_stack.make("down").returncode == 0
    env_file = team_stack.directory / ".env"
    env_file.rename(team_stack.directory / "old.env")
    # The one line the docs show, written by hand
    env_file.write_text(f"COMPOSE_FILE={TEAM_COMPOSE_FILE}\n")
    up = team_stack.make("up")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    new = team_stack.secrets()
    assert all(new[key] and new[key] != old[key] for key in old), "secrets not regenerated"
    team_stack.mlflow_url = printed_urls(up.stdout)["MLflow"]
    assert team_stack.psql("SELECT run_uuid FROM runs ORDER BY run_uuid") == runs
    api = f"{team_stack.mlflow_url}/api/2.0/mlflow"
    again = requests.get(f"{api}/registered-models/search", auth=team_stack.credentials, timeout=60)
    assert again.status_code == 200, again.text
    assert again.json() == models
    assert requests.get(f"{api}/registered-models/search", auth=auth, timeout=60).status_code == 401


def test_sqlite_mode_with_auth_reaches_its_data_under_a_new_env(team_stack: TeamStack):
    env_file = team_stack.directory / ".env"
    env_file.write_text(
        re.sub(r"(?m)^MLSTACK_MLFLOW_AUTH=.*$", "MLSTACK_MLFLOW_AUTH=true", env_file.read_text())
    )
    # Leaving team mode is explicit, one line says which store is active
    left = team_stack.make("up", "TEAM=0")
    assert left.returncode == 0, left.stdout[-3000:] + left.stderr[-3000:]
    assert re.search(r"^mode: the SQLite tracking server", left.stderr, re.MULTILINE), left.stderr
    services = set(team_stack.compose("ps", "--services").stdout.split())
    assert services == {"mlflow", "jupyter"}, services
    trained = team_stack.compose(
        "run", "--rm", "bash", "python", "train.py", "--experiment", "sqlite-auth",
        "--n-estimators", "10", "--curve-steps", "2",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_id = re.search(r"^run ([0-9a-f]{32}) logged", trained.stdout, re.MULTILINE)[1]
    assert team_stack.make("down").returncode == 0
    env_file.rename(team_stack.directory / "sqlite-old.env")
    env_file.write_text("MLSTACK_MLFLOW_AUTH=true\n")
    up = team_stack.make("up")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    url = printed_urls(up.stdout)["MLflow"]
    deadline = time.monotonic() + 60
    while True:
        found = requests.get(
            f"{url}/api/2.0/mlflow/runs/get",
            params={"run_id": run_id},
            auth=team_stack.credentials,
            timeout=60,
        )
        if found.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert found.status_code == 200, found.text
    assert found.json()["run"]["info"]["status"] == "FINISHED"
    # With auth on in SQLite mode too, only the tracking server holds the admin's password
    admin_password = team_stack.settings()["MLFLOW_ADMIN_PASSWORD"]
    assert secret_holders(team_stack.name, admin_password) == {"mlflow"}


@pytest.mark.daemon_restart
@pytest.mark.skipif(
    os.environ.get("MLSTACK_TEST_DAEMON_RESTART") != "1",
    reason="restarts the Docker daemon, stopping every container on it: set "
    "MLSTACK_TEST_DAEMON_RESTART=1 on a machine of its own (CI does)",
)
def test_after_a_docker_daemon_restart_the_team_server_and_its_schedules_are_back_with_no_make(
    team_stack: TeamStack,
):
    scheduled = team_stack.make("up", "SCHEDULE=1")
    assert scheduled.returncode == 0, scheduled.stdout[-3000:] + scheduled.stderr[-3000:]

    def engine_rows(kind: str) -> set[str]:
        """The ids of the engine's deployments (the jobs) or flow runs (their history)."""
        return {row["id"] for row in scheduler_rows(team_stack.directory, kind)}

    jobs = engine_rows("deployments")
    assert len(jobs) == 3, jobs
    # The engine's scheduler service makes each job's next runs within its loop (a minute)
    runs_before = wait_for(lambda: engine_rows("flow_runs"), 150, "the jobs' scheduled runs")
    restart_docker_daemon()
    services = {"mlflow", "jupyter", "postgres", "s3", "scheduler", "scheduler-worker"}
    wait_until_healthy(team_stack.name, services, timeout=300)
    assert engine_rows("deployments") == jobs
    assert runs_before <= engine_rows("flow_runs")
    runs = requests.get(
        f"{team_stack.mlflow_url}/api/2.0/mlflow/experiments/search",
        params={"max_results": 5},
        auth=team_stack.credentials,
        timeout=60,
    )
    assert runs.status_code == 200, runs.text
