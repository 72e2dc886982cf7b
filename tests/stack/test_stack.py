"""The stack end to end, as a data scientist uses it: `make up`, the printed URLs, a training
run in the runner that shows up in MLflow with its model and plot, Jupyter's token, a notebook
that logs a run, file ownership in the project folder, and data that survives `make down`.

The tests run in file order and share one stack (see conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient
from dotenv import dotenv_values
from sklearn.datasets import load_wine

from tests.helpers import REPO_ROOT, console_commands, run, secret_holders

pytestmark = pytest.mark.stack


def train(stack, *options: str):
    """Run train.py in the runner, as the manual says, and return the finished process."""
    return stack.compose("run", "--rm", "bash", "python", "train.py", *options)


def project_containers(docker_client, stack) -> dict:
    """The project's running service containers, by service name."""
    label = f"com.docker.compose.project={stack.project}"
    containers = docker_client.containers.list(filters={"label": label})
    return {c.labels["com.docker.compose.service"]: c for c in containers}


def get_run(stack, run_id: str) -> dict:
    """A run as the MLflow REST API at the host's mapped port returns it."""
    response = requests.get(
        f"{stack.urls['mlflow']}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()["run"]


@pytest.fixture(scope="module")
def training_run(stack) -> dict[str, str]:
    """One run of train.py with explicit hyperparameters.

    Returns:
        ``run_id``, ``model_uri`` and ``url`` as train.py printed them.
    """
    result = train(stack, "--n-estimators", "30", "--max-depth", "5", "--run-name", "e2e")
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = re.search(r"^run ([0-9a-f]{32}) logged", result.stdout, re.M)
    model_uri = re.search(r"^model: (\S+)$", result.stdout, re.M)
    url = re.search(r"^open: (\S+)$", result.stdout, re.M)
    assert run_id and model_uri and url, result.stdout
    return {"run_id": run_id[1], "model_uri": model_uri[1], "url": url[1]}


@pytest.fixture
def tracking(stack):
    """The host's MLflow client pointed at the stack's mapped port, reset afterwards."""
    mlflow.set_tracking_uri(stack.urls["mlflow"])
    yield MlflowClient(stack.urls["mlflow"])
    mlflow.set_tracking_uri(None)


def test_make_up_prints_loopback_urls_that_answer(stack):
    assert stack.urls["mlflow"].startswith("http://127.0.0.1:")
    assert stack.urls["jupyter"].startswith("http://127.0.0.1:")
    assert stack.urls["jupyter"].endswith(f"/lab?token={stack.token()}")
    health = requests.get(f"{stack.urls['mlflow']}/health", timeout=10)
    assert health.status_code == 200 and health.text.strip() == "OK"
    ui = requests.get(stack.urls["mlflow"], timeout=10)
    assert ui.status_code == 200 and "<html" in ui.text.lower()
    lab = requests.get(stack.urls["jupyter"], timeout=10)
    assert lab.status_code == 200 and "JupyterLab" in lab.text


def test_services_are_healthy_and_run_as_the_host_user(docker_client, stack):
    containers = project_containers(docker_client, stack)
    assert set(containers) == {"mlflow", "jupyter"}
    for service, container in containers.items():
        assert container.attrs["State"]["Health"]["Status"] == "healthy", service
    jupyter = containers["jupyter"]
    assert jupyter.attrs["Config"]["User"] == f"{stack.uid}:{stack.uid}"
    assert jupyter.exec_run(["id", "-u"]).output.decode().strip() == str(stack.uid)


def test_no_container_but_the_tracking_server_holds_the_admin_password(stack):
    admin_password = dotenv_values(stack.directory / ".env")["MLFLOW_ADMIN_PASSWORD"]
    assert secret_holders(stack.project, admin_password) == {"mlflow"}
    job = stack.compose(
        "run", "--rm", "bash", "python", "-c",
        "import pathlib; print(pathlib.Path('/proc/1/environ').read_text())",
    )  # fmt: skip
    assert job.returncode == 0 and "MLFLOW_TRACKING_URI" in job.stdout, job.stderr[-2000:]
    assert admin_password not in job.stdout


def test_ports_are_published_on_loopback_only(docker_client, stack):
    for service, container in project_containers(docker_client, stack).items():
        bindings = [b for port in container.ports.values() for b in (port or [])]
        assert bindings, service
        assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}, (service, bindings)


def test_training_run_has_its_params_metrics_and_a_host_url(stack, training_run):
    run = get_run(stack, training_run["run_id"])
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["n_estimators"] == "30" and params["max_depth"] == "5"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert {"accuracy", "f1_macro", "train_accuracy"} <= set(metrics)
    assert 0.8 <= metrics["accuracy"] <= 1.0
    experiment_id = run["info"]["experiment_id"]
    assert training_run["url"] == (
        f"{stack.urls['mlflow']}/#/experiments/{experiment_id}/runs/{training_run['run_id']}"
    )
    experiment = requests.get(
        f"{stack.urls['mlflow']}/api/2.0/mlflow/experiments/get",
        params={"experiment_id": experiment_id},
        timeout=10,
    ).json()["experiment"]
    env_file = (stack.directory / "project/project.env").read_text()
    assert f"MLFLOW_EXPERIMENT_NAME={experiment['name']}" in env_file


def test_training_plot_downloads_from_the_host(stack, training_run, tracking, tmp_path):
    path = mlflow.artifacts.download_artifacts(
        run_id=training_run["run_id"],
        artifact_path="plots/confusion_matrix.png",
        dst_path=str(tmp_path),
    )
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_logged_model_loads_and_predicts_on_the_host_and_in_the_runner(
    stack, training_run, tracking
):
    features = load_wine(as_frame=True).data
    model = mlflow.pyfunc.load_model(training_run["model_uri"])
    assert model.metadata.signature is not None
    on_host = [int(label) for label in model.predict(features)]
    in_runner = stack.compose(
        "run",
        "--rm",
        "bash",
        "python",
        "-c",
        "import json, mlflow; from sklearn.datasets import load_wine; "
        f"m = mlflow.pyfunc.load_model({training_run['model_uri']!r}); "
        "print(json.dumps([int(x) for x in m.predict(load_wine(as_frame=True).data)]))",
    )
    assert in_runner.returncode == 0, in_runner.stderr
    assert json.loads(in_runner.stdout.strip().splitlines()[-1]) == on_host
    # A real model of the data, not a constant
    assert len(set(on_host)) == 3


@pytest.mark.parametrize("path", ["/api/contents", "/api/kernels", "/api/sessions", "/api/me"])
def test_jupyter_refuses_requests_without_the_token(stack, path):
    base = stack.urls["jupyter"].split("/lab")[0]
    assert requests.get(f"{base}{path}", timeout=10).status_code == 403
    wrong = {"Authorization": "token not-the-token"}
    assert requests.get(f"{base}{path}", headers=wrong, timeout=10).status_code == 403
    right = {"Authorization": f"token {stack.token()}"}
    assert requests.get(f"{base}{path}", headers=right, timeout=10).status_code == 200


def test_notebook_executed_in_jupyter_logs_a_run(stack, tracking):
    def notebook_runs() -> list:
        experiment = tracking.get_experiment_by_name("fixture-project")
        if experiment is None:
            return []
        return tracking.search_runs(
            [experiment.experiment_id],
            filter_string="attributes.run_name = 'notebook-logistic-regression'",
            order_by=["attributes.start_time DESC"],
        )

    # Other tests may have run the notebook before: this one's run is the one more
    before = len(notebook_runs())
    result = stack.execute_notebook("notebooks/explore_wine.ipynb", "--output-dir", "/tmp")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = notebook_runs()
    assert len(runs) == before + 1
    assert runs[0].data.metrics["cv_accuracy_mean"] > 0.8
    assert runs[0].data.params["model"] == "logistic_regression"


def test_files_created_in_the_project_folder_belong_to_the_host_user(stack):
    result = stack.compose("run", "--rm", "bash", "touch", "created-by-bash.txt")
    assert result.returncode == 0, result.stderr
    result = stack.compose("exec", "-T", "jupyter", "touch", "created-by-jupyter.txt")
    assert result.returncode == 0, result.stderr
    for name in ("created-by-bash.txt", "created-by-jupyter.txt"):
        info = (stack.directory / "project" / name).stat()
        assert (info.st_uid, info.st_gid) == (stack.uid, stack.uid), name


def test_make_up_names_a_service_that_is_not_healthy_in_time_and_shows_its_logs(stack):
    assert stack.make("down").returncode == 0
    # One second is too short for either server to become healthy
    result = run(
        ["make", "--no-print-directory", "up"],
        stack.directory,
        stack.env | {"MLSTACK_UP_TIMEOUT": "1"},
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: service ")]
    assert errors and all("is not healthy" in line for line in errors), result.stderr
    assert "---- last logs of" in result.stderr
    stack.up()


def test_runs_survive_make_down_and_make_up(docker_client, stack, training_run):
    before = get_run(stack, training_run["run_id"])["data"]["metrics"]
    result = stack.make("down")
    assert result.returncode == 0, result.stderr
    assert project_containers(docker_client, stack) == {}
    stack.up()
    after = get_run(stack, training_run["run_id"])["data"]["metrics"]
    assert sorted(after, key=lambda m: m["key"]) == sorted(before, key=lambda m: m["key"])


def test_train_starts_the_tracking_server_when_the_stack_is_down(docker_client, stack):
    assert stack.make("down").returncode == 0
    result = train(stack, "--n-estimators", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "open it at the MLflow URL that 'make urls' prints" in result.stdout
    assert set(project_containers(docker_client, stack)) == {"mlflow"}
    stack.up()


def test_the_quick_start_commands_work_as_written(stack):
    # As the pages have them, in the stack's copy (a fresh clone with the fixture project); the
    # stack is up already, so `make up` finds it running. The README's quick start is the
    # manual's, command for command: running them once proves both
    page = "docs/quick-start.md"
    commands = console_commands(REPO_ROOT / page)
    assert console_commands(REPO_ROOT / "README.md") == commands
    assert commands[0] == "make up" and "train.py" in commands[1], commands
    for command in commands:
        result = run(["bash", "-c", command], stack.directory, stack.env, timeout=900)
        assert (
            result.returncode == 0
        ), f"{page}: {command}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    assert "logged to experiment" in result.stdout, result.stdout
