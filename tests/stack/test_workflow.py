"""What a data scientist does after training: register and serve a model, read the job logs,
and work in a JupyterLab that has widgets, git and a black formatter."""

from __future__ import annotations

import json
import re
import time

import mlflow
import pytest
import requests
from sklearn.datasets import load_wine

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.stack


def test_a_registered_model_is_served_with_the_predictions_of_the_model(stack):
    result = stack.compose(
        "run",
        "--rm",
        "bash",
        "python",
        "train.py",
        "--n-estimators",
        "25",
        "--register-model",
        "e2e-wine",
    )
    assert result.returncode == 0, result.stderr
    model_uri = re.search(r"^registered: (models:/e2e-wine/\d+)", result.stdout, re.M)[1]
    served = stack.make("serve", f"MODEL={model_uri}", timeout=600)
    try:
        assert served.returncode == 0, served.stdout + served.stderr
        url = re.search(r"POST to (http://127\.0\.0\.1:\d+/invocations)", served.stdout)[1]
        rows = load_wine(as_frame=True).data.iloc[::7]
        response = requests.post(
            url, json={"dataframe_split": rows.to_dict(orient="split")}, timeout=60
        )
        assert response.status_code == 200, response.text
        mlflow.set_tracking_uri(stack.urls["mlflow"])
        expected = mlflow.pyfunc.load_model(model_uri).predict(rows)
        assert response.json()["predictions"] == [int(label) for label in expected]
    finally:
        mlflow.set_tracking_uri(None)
        stack.compose("--profile", "serve", "rm", "--stop", "--force", "serve")


def test_make_serve_without_a_model_says_how(stack):
    result = stack.make("serve")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "MODEL=models:/" in errors[0]


def test_jobs_log_to_the_console_at_the_env_level_and_always_to_a_file(stack):
    quiet = stack.compose(
        "run", "--rm", "--env", "LOG_LEVEL=WARNING", "bash", "python", "train.py", "--run-name", "q"
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "job started" not in quiet.stderr
    log_file = stack.directory / "project/logs/jobs.log"
    last = log_file.read_text().splitlines()[-2:]
    assert any(
        "INFO train: job started, tracking at http://mlflow:5000" in line for line in last
    ), last
    assert log_file.stat().st_uid == stack.uid
    handlers = stack.compose(
        "run",
        "--rm",
        "bash",
        "python",
        "-c",
        "import logging; from mlstack.logs import setup_logging; setup_logging('probe'); "
        "print([type(h).__name__ for h in logging.getLogger().handlers])",
    )
    assert "RotatingFileHandler" in handlers.stdout, handlers.stderr
    bad = stack.compose(
        "run", "--rm", "--no-deps", "--env", "LOG_LEVEL=CHATTY", "bash", "python", "train.py"
    )
    assert bad.returncode == 1 and "LOG_LEVEL=CHATTY is not a logging level" in bad.stderr


def test_jupyterlab_ships_widgets_git_and_a_black_formatter(stack):
    extensions = stack.compose("exec", "-T", "jupyter", "jupyter", "labextension", "list")
    # Without the terminal colours it prints even into a pipe
    listing = re.sub(r"\x1b\[[0-9;]*m", "", extensions.stdout + extensions.stderr)
    for name in (
        "@jupyter-widgets/jupyterlab-manager",
        "@jupyterlab/git",
        "jupyterlab_code_formatter",
    ):
        assert re.search(rf"{re.escape(name)} v\S+ enabled", listing), name
    base = stack.urls["jupyter"].split("/lab")[0]
    headers = {"Authorization": f"token {stack.token()}"}
    formatters = requests.get(
        f"{base}/jupyterlab_code_formatter/formatters", headers=headers, timeout=30
    )
    assert formatters.status_code == 200, formatters.text
    assert formatters.json()["formatters"]["black"]["enabled"] is True
    git = requests.post(
        f"{base}/git/show_top_level", headers=headers, json={"path": ""}, timeout=30
    )
    assert git.status_code == 200, git.text


@pytest.mark.parametrize("notebook", sorted(REPO_ROOT.glob("project/notebooks/*.ipynb")), ids=str)
def test_committed_notebooks_carry_no_outputs(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)


def test_make_logs_shows_the_servers_requests_but_not_its_healthchecks(stack, docker_client):
    # The healthcheck probes /health once a second: wait until Docker has a few more passed
    # probes on record than now, so the logs below had probes to hide
    def passed_probes() -> list[str]:
        container = docker_client.containers.get(stack.compose("ps", "-q", "mlflow").stdout.strip())
        return [p["Start"] for p in container.attrs["State"]["Health"]["Log"] if p["ExitCode"] == 0]

    before = set(passed_probes())
    deadline = time.monotonic() + 30
    while len(set(passed_probes()) - before) < 3:
        assert time.monotonic() < deadline, "no healthcheck probe ran"
        time.sleep(0.5)
    search = f"{stack.urls['mlflow']}/api/2.0/mlflow/experiments/search"
    assert requests.get(search, params={"max_results": 1}, timeout=10).status_code == 200
    deadline = time.monotonic() + 30
    while True:
        logs = stack.compose("logs", "--no-color", "mlflow").stdout
        if "/api/2.0/mlflow/experiments/search" in logs or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "/api/2.0/mlflow/experiments/search" in logs, logs[-3000:]
    # The container's own probes come from 127.0.0.1; a job's server check (from a sibling
    # container) is a real request and stays
    probes = [line for line in logs.splitlines() if "127.0.0.1:" in line and "/health" in line]
    assert not probes, probes[:3]


def test_jupyter_and_runner_get_a_large_shm_and_jupyterlab_shows_the_memory_limit(stack):
    shm = stack.compose("run", "--rm", "--no-deps", "bash", "df", "-k", "--output=size", "/dev/shm")
    assert shm.returncode == 0, shm.stderr
    # Docker's default is 64 MB; the stack's default 1 GB (MLSTACK_SHM_SIZE)
    assert int(shm.stdout.split()[-1]) * 1024 >= 2**30

    env_file = stack.directory / ".env"
    before = env_file.read_text()
    env_file.write_text(before + "MLSTACK_MEMORY_LIMIT=3g\n")
    # Only jupyter is recreated (mlflow has no such limit), on the port .env keeps for it
    jupyter_up = ("up", "--detach", "--wait", "jupyter")
    try:
        assert stack.compose(*jupyter_up).returncode == 0
        base = stack.urls["jupyter"].split("/lab")[0]
        headers = {"Authorization": f"token {stack.token()}"}
        metrics = requests.get(f"{base}/api/metrics/v1", headers=headers, timeout=10)
        assert metrics.status_code == 200, metrics.text
        # jupyter-resource-usage: the kernels' memory against the container's limit
        assert metrics.json()["limits"]["memory"]["rss"] == 3 * 2**30
        assert metrics.json()["rss"] > 0
    finally:
        env_file.write_text(before)
        assert stack.compose(*jupyter_up).returncode == 0


def test_make_smoke_logs_a_run_of_the_stacks_own_and_leaves_a_running_stack_up(stack):
    # A project's CI runs it on a stack that is down (it then takes it down again); here the
    # session's stack runs, and stays up
    result = stack.make("smoke")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    smoked = re.search(
        r"^smoke: run ([0-9a-f]{32}) logged and read back whole", result.stdout, re.M
    )
    assert smoked and result.stdout.rstrip().endswith("smoke: passed"), result.stdout
    run = stack.rest("runs/get", run_id=smoked[1])["run"]
    assert run["info"]["status"] == "FINISHED", run
    running = stack.compose("ps", "--quiet", "--status", "running", "mlflow")
    assert running.stdout.strip(), "make smoke took down a stack it had not started"
