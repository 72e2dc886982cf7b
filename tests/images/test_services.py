"""The service images on their own: the Jupyter kernel, the MLflow server's health endpoint and
settings, the runner's tools."""

from __future__ import annotations

import json
import time

import pytest
import requests
import yaml

from tests.helpers import REPO_ROOT
from tests.images.test_images import output_of


@pytest.fixture
def started(docker_client):
    """Start containers detached and remove them afterwards, even when the test fails.

    Yields:
        A function ``start(image, **options) -> Container``.
    """
    containers = []

    def start(image: str, **options):
        options.setdefault("healthcheck", compose_health_timing())
        container = docker_client.containers.run(image, detach=True, **options)
        containers.append(container)
        return container

    yield start
    for container in containers:
        container.remove(force=True)


def compose_health_timing() -> dict[str, int]:
    """compose.yaml's x-healthcheck (the stack's one health-check timing; the images carry only
    the probe) as the Docker API's HealthConfig: nanoseconds and a retry count. Its probe is left
    out, so each image's own applies."""
    timing = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())["x-healthcheck"]
    # Compose durations as compose.yaml writes them: a whole number of seconds, e.g. 180s
    nanoseconds = {key: int(str(value).removesuffix("s")) * 10**9 for key, value in timing.items()
                   if key != "retries"}  # fmt: skip
    return {**nanoseconds, "retries": int(timing["retries"])}


def wait_healthy(container, deadline_seconds: float = 180) -> None:
    """Poll the container's Docker health status until healthy.

    Raises:
        AssertionError: when it is not healthy within ``deadline_seconds``, with its logs.
    """
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        container.reload()
        if container.attrs["State"].get("Health", {}).get("Status") == "healthy":
            return
        assert container.status in ("created", "running"), container.logs().decode()[-3000:]
        time.sleep(0.5)
    raise AssertionError(
        f"not healthy in {deadline_seconds}s:\n{container.logs().decode()[-3000:]}"
    )


def host_url(container, port: str) -> str:
    """``http://127.0.0.1:<host port>`` for a container port published on loopback."""
    container.reload()
    binding = container.attrs["NetworkSettings"]["Ports"][port][0]
    return f"http://{binding['HostIp']}:{binding['HostPort']}"


def test_jupyter_has_the_project_kernel(docker_client, built_images):
    listing = json.loads(
        output_of(
            docker_client, built_images["jupyter"], ["jupyter", "kernelspec", "list", "--json"]
        )
    )
    spec = listing["kernelspecs"]["python3"]["spec"]
    assert spec["argv"][0] == "/opt/venv/bin/python"
    assert "mlstack" in spec["display_name"]


def test_jupyter_server_is_healthy_under_an_arbitrary_uid(started, built_images):
    container = started(
        built_images["jupyter"],
        user="4242:4242",
        environment={"JUPYTER_TOKEN": "t" * 48},
        ports={"8888/tcp": ("127.0.0.1", None)},
    )
    wait_healthy(container)
    url = host_url(container, "8888/tcp")
    assert requests.get(f"{url}/api/status", timeout=10).status_code == 403
    status = requests.get(f"{url}/api/status", params={"token": "t" * 48}, timeout=10)
    assert status.status_code == 200, status.text


def test_mlflow_server_answers_health_with_one_worker_and_no_job_runner(started, built_images):
    container = started(built_images["mlflow"], ports={"5000/tcp": ("127.0.0.1", None)})
    wait_healthy(container)
    response = requests.get(f"{host_url(container, '5000/tcp')}/health", timeout=10)
    assert response.status_code == 200 and response.text.strip() == "OK"
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert env["MLFLOW_WORKERS"] == "1"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("sqlite:////data/")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("/data/")


def test_runner_has_bash_git_and_make(docker_client, built_images):
    output = output_of(
        docker_client,
        built_images["bash"],
        ["bash", "-c", "git --version && make --version | head -n 1 && echo $BASH_VERSION"],
    )
    assert "git version" in output and "GNU Make" in output
