"""VS Code / Dev Containers: the Dev Containers CLI (`devcontainer up`, `devcontainer exec`, as
the editor runs them) attaches to the stack's own runner service, with MLflow and Jupyter
beside it, and a training run from inside the dev container lands in the stack's MLflow."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests

from tests.helpers import Project, private_copy, project_image_ref, project_resources, run

pytestmark = pytest.mark.tools


def devcontainer(cli: Path, project: Project, *args: str, timeout: float = 600):
    """Run ``devcontainer <command> --workspace-folder <project> <args>``; never raises.

    The CLI keeps its generated compose files in a folder of its own beside the project copy.
    """
    command, *rest = args
    options = [
        "--workspace-folder",
        str(project.directory),
        "--user-data-folder",
        str(project.directory.parent / "devcontainer-data"),
    ]
    return run([str(cli), command, *options, *rest], project.directory, project.env, timeout)


@pytest.fixture(scope="module")
def dev_container(
    devcontainer_cli, tmp_path_factory, test_uid, docker_client, built_images
) -> tuple[Project, dict]:
    """A project copy opened as a dev container once for the module: `make build` (its own
    images and .env), then `devcontainer up`; taken down with its volumes at the end.

    Returns:
        The project and the CLI's JSON result (outcome, containerId, remoteUser, ...).
    """
    directory, env = private_copy(tmp_path_factory.mktemp("devcontainer"), "devcontainer", test_uid)
    project = Project(directory, env)
    try:
        made = project.make("build")
        assert made.returncode == 0, made.stderr
        result = devcontainer(devcontainer_cli, project, "up")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        outcome = json.loads(result.stdout.strip().splitlines()[-1])
        assert outcome["outcome"] == "success", outcome
        yield project, outcome
    finally:
        if (directory / ".env").exists():
            project.down()
            left = project_resources(docker_client, project.name)
            assert not left, f"teardown left {left}"


def test_devcontainer_up_attaches_to_the_runner_with_mlflow_and_jupyter_beside_it(
    dev_container, docker_client, test_uid
):
    project, outcome = dev_container
    assert outcome["composeProjectName"] == project.name
    assert outcome["remoteWorkspaceFolder"] == "/project"
    # Runs as the host user that compose.yaml sets from .env: no remapped user, no new image
    assert outcome["remoteUser"] == str(test_uid)
    label = {"label": f"com.docker.compose.project={project.name}"}
    services = {
        c.labels["com.docker.compose.service"]: c
        for c in docker_client.containers.list(filters=label)
    }
    assert set(services) == {"bash", "mlflow", "jupyter"}
    runner = services["bash"]
    assert runner.id == outcome["containerId"]
    assert runner.attrs["Config"]["Image"] == project_image_ref(project.name, "bash")
    assert runner.attrs["Config"]["User"] == f"{test_uid}:{test_uid}"
    mounts = {m["Destination"]: m["Source"] for m in runner.attrs["Mounts"]}
    assert Path(mounts["/project"]) == project.directory / "project"
    assert "MLFLOW_TRACKING_URI=http://mlflow:5000" in runner.attrs["Config"]["Env"]


def test_training_run_from_the_dev_container_is_logged_to_the_stacks_mlflow(
    dev_container, devcontainer_cli
):
    project, _ = dev_container
    result = devcontainer(
        devcontainer_cli,
        project,
        "exec",
        "python",
        "train.py",
        "--n-estimators",
        "5",
        "--run-name",
        "from-devcontainer",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_id = re.search(r"^run ([0-9a-f]{32}) logged", result.stdout, re.M)
    assert run_id, result.stdout
    address = project.compose("port", "mlflow", "5000").stdout.strip()
    response = requests.get(
        f"http://{address}/api/2.0/mlflow/runs/get", params={"run_id": run_id[1]}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.json()["run"]["info"]["run_name"] == "from-devcontainer"


def test_devcontainer_keeps_the_stack_running_and_forwards_jupyter_and_mlflow(
    dev_container, devcontainer_cli
):
    project, _ = dev_container
    result = devcontainer(devcontainer_cli, project, "read-configuration")
    assert result.returncode == 0, result.stderr[-3000:]
    configuration = json.loads(result.stdout)["configuration"]
    assert configuration["shutdownAction"] == "none"
    assert set(configuration["forwardPorts"]) == {"jupyter:8888", "mlflow:5000"}


def test_compose_run_of_the_runner_still_exits_with_its_command(dev_container):
    # The dev container's long-running command lives in .devcontainer/ only: the manual's
    # `docker compose run bash ...` still runs the command and exits
    project, _ = dev_container
    result = project.compose("run", "--rm", "bash", "python", "-c", "print('done')", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "done"
