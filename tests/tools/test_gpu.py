"""GPU: compose.gpu.yaml reserves NVIDIA GPUs for jupyter and bash, never for mlflow, and
`make ... GPU=1` records it in .env (COMPOSE_FILE), so every compose call adds it until GPU=0. This machine has no
GPU: the tests prove the merged configuration and the device request the Docker Engine gets,
not that a GPU is usable inside the containers."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers import unique_name

pytestmark = pytest.mark.tools

NVIDIA_GPUS = [{"driver": "nvidia", "count": -1, "capabilities": ["gpu"]}]


def reserved_devices(config_yaml: str) -> dict[str, list | None]:
    """Each service's reserved devices in a rendered compose configuration (``None``: none)."""
    services = yaml.safe_load(config_yaml)["services"]
    return {
        name: (service.get("deploy") or {})
        .get("resources", {})
        .get("reservations", {})
        .get("devices")
        for name, service in services.items()
    }


@pytest.fixture
def project(new_project):
    """A project copy with its .env, nothing started."""
    project = new_project("gpu project", unique_name("gpu"))
    assert project.make(".env").returncode == 0
    return project


def test_make_with_gpu_1_reserves_nvidia_gpus_for_jupyter_and_bash_only(project):
    result = project.make("config", "GPU=1")
    assert result.returncode == 0, result.stderr
    assert reserved_devices(result.stdout) == {
        "jupyter": NVIDIA_GPUS,
        "bash": NVIDIA_GPUS,
        "dask-worker": NVIDIA_GPUS,
        "mlflow": None,
        "serve": None,
        "dask-scheduler": None,
        "scheduler-worker": NVIDIA_GPUS,
        "scheduler": None,
    }
    # Remembered in .env: plain compose reserves them too, until GPU=0 leaves the mode
    again = project.compose("--profile", "*", "config")
    assert reserved_devices(again.stdout)["bash"] == NVIDIA_GPUS, again.stderr
    left = project.make("config", "GPU=0")
    assert left.returncode == 0, left.stderr
    assert set(reserved_devices(left.stdout).values()) == {None}
    assert "COMPOSE_FILE=compose.yaml\n" in (project.directory / ".env").read_text()


def test_make_without_gpu_reserves_no_device(project):
    result = project.make("config")
    assert result.returncode == 0, result.stderr
    assert set(reserved_devices(result.stdout).values()) == {None}


def test_compose_file_in_env_enables_the_gpu_override_for_plain_compose(project):
    with (project.directory / ".env").open("a") as env_file:
        env_file.write("COMPOSE_FILE=compose.yaml:compose.gpu.yaml\n")
    result = project.compose("--profile", "runner", "config")
    assert result.returncode == 0, result.stderr
    assert reserved_devices(result.stdout)["bash"] == NVIDIA_GPUS


def test_containers_are_created_with_an_nvidia_device_request(project, built_images, docker_client):
    # The project's own images first (make build: the shared ones are up to date)
    built = project.make("build", "IMAGES=project")
    assert built.returncode == 0, built.stderr[-3000:]
    # Created, not started: starting needs the NVIDIA runtime (absent here, so Docker would
    # refuse with 'could not select device driver "nvidia"')
    result = project.compose(
        "-f", "compose.yaml", "-f", "compose.gpu.yaml", "create", "jupyter", "mlflow"
    )
    assert result.returncode == 0, result.stderr
    label = {"label": f"com.docker.compose.project={project.name}"}
    containers = docker_client.containers.list(all=True, filters=label)
    requests = {
        c.labels["com.docker.compose.service"]: c.attrs["HostConfig"]["DeviceRequests"]
        for c in containers
    }
    assert requests["mlflow"] is None
    assert requests["jupyter"] == [
        {
            "Driver": "nvidia",
            "Count": -1,
            "DeviceIDs": None,
            "Capabilities": [["gpu"]],
            "Options": None,
        }
    ]


def test_make_up_gpu_1_without_the_nvidia_runtime_refuses_before_anything_starts(
    project, docker_client
):
    # This machine's Docker has no nvidia runtime, like most laptops
    assert "nvidia" not in docker_client.info().get("Runtimes", {})
    result = project.make("up", "GPU=1")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "NVIDIA Container Toolkit" in errors[0], result.stderr
    assert "make up GPU=0" in errors[0]
    label = {"label": f"com.docker.compose.project={project.name}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    # Not remembered: the next make up is not refused the same way
    assert "compose.gpu.yaml" not in (project.directory / ".env").read_text()
    again = project.make("config")
    assert again.returncode == 0 and set(reserved_devices(again.stdout).values()) == {None}
