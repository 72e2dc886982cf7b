"""The stack's package, mlstack, as jobs use it: MLflow's asynchronous logging is on for jobs and
every value a training loop logs is in the backend store when the run ends, also when the job
fails inside the run."""

from __future__ import annotations

import re
import secrets

import pytest
import requests

from tests.helpers import image_settings

pytestmark = pytest.mark.stack

# The tests' own job, in the test project (copy_project), run from /project
JOB = ".stack-tests/jobs/log_values.py"
VALUES = 10_000


def history(stack, run_id: str) -> list[dict]:
    """Every stored value of the run's metric 'loss', through the REST API (one page holds
    25,000)."""
    response = requests.get(
        f"{stack.urls['mlflow']}/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": "loss", "max_results": 25_000},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json().get("metrics", [])


def run_status(stack, run_id: str) -> str:
    return stack.rest("runs/get", run_id=run_id)["run"]["info"]["status"]


@pytest.mark.parametrize("fail", [False, True], ids=["ends", "raises"])
def test_a_job_logging_10000_values_asynchronously_stores_them_all(stack, fail):
    name = f"values-{secrets.token_hex(4)}"
    options = ["--values", str(VALUES), "--run-name", name] + (["--fail"] if fail else [])
    result = stack.compose("run", "--rm", "bash", "python", JOB, *options, timeout=900)

    printed = re.search(r"^run ([0-9a-f]{32}), asynchronous: (\w+)$", result.stdout, re.M)
    assert printed, result.stdout + result.stderr
    assert printed[2] == "True", "jobs must log asynchronously by default"
    if fail:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert result.returncode == 1 and errors == [
            "error: failed on purpose after the loop"
        ], result.stderr
        assert run_status(stack, printed[1]) == "FAILED"
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert run_status(stack, printed[1]) == "FINISHED"
    stored = history(stack, printed[1])
    assert sorted(m["step"] for m in stored) == list(range(VALUES))
    assert all(m["value"] == pytest.approx(1 / (m["step"] + 1)) for m in stored)


def test_the_stacks_packages_have_the_stacks_one_version(stack, docker_client, built_images):
    # env/images.env's MLSTACK_VERSION, written into each package by the build
    version = image_settings()["MLSTACK_VERSION"]
    probe = "import importlib.metadata as m; print(m.version('{}'))"
    job = stack.compose("run", "--rm", "--no-deps", "bash", "python", "-c", probe.format("mlstack"))
    assert job.stdout.strip().splitlines()[-1:] == [version], job.stdout + job.stderr
    server = docker_client.containers.run(
        built_images["mlflow"], ["python", "-c", probe.format("mlstack-server")], remove=True
    )
    assert server.decode().strip() == version
