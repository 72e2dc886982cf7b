"""Dask on one machine: `make up WORKERS=N` starts a scheduler and N workers on the project's own
runner image beside the stack, sweep.py runs its search on them and logs to the same MLflow,
and the faults a user meets (a worker killed mid-search, the scheduler down, other package
versions) end as the manual says. The module leaves the stack as it found it: no Dask container.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest
import requests

pytestmark = pytest.mark.stack

DASK_SERVICES = ("dask-scheduler", "dask-worker")
# The wheels the tests install, as the containers see the test project (copy_project)
WHEELS = "/project/.stack-tests/wheels"
# Heavier than sweep.py's default grid (8 candidates x 5 folds, 2.7 times the trees): long
# enough to kill a worker in the middle of it (the kill comes with the first task running)
SLOW_GRID = ("--n-estimators", "100,200,300,400", "--max-depth", "4,8")


def dask_containers(docker_client, stack, service: str | None = None) -> list:
    """The stack's Dask containers (all states), or those of one service."""
    containers = docker_client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={stack.project}"}
    )
    wanted = (service,) if service else DASK_SERVICES
    return [c for c in containers if c.labels.get("com.docker.compose.service") in wanted]


def up(stack, *options: str) -> str:
    """`make up` with ``options``; returns its output after checking it succeeded."""
    result = stack.make("up", *options)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def dashboard(output: str) -> str:
    """The Dask dashboard URL that `make up`/`make urls` printed."""
    found = re.search(r"^Dask:\s+(http://127\.0\.0\.1:\d+/status) \((\d+) workers", output, re.M)
    assert found, output
    return found[1]


@pytest.fixture(scope="module")
def cluster_url(stack, docker_client):
    """`make up WORKERS=2` once for the module, its dashboard URL; `make up` at the end, which
    must leave no Dask container behind (also when a test failed)."""
    try:
        yield dashboard(up(stack, "WORKERS=2"))
    finally:
        output = up(stack)
        assert "Dask:" not in output, output
        assert dask_containers(docker_client, stack) == []


@pytest.fixture
def cluster(stack, docker_client, cluster_url) -> str:
    """The cluster with its 2 workers running, started again when an earlier test broke it."""
    states = [c.status for c in dask_containers(docker_client, stack)]
    if states.count("running") != 3:
        return dashboard(up(stack, "WORKERS=2"))
    return cluster_url


def sweep(stack, *options: str) -> subprocess.CompletedProcess[str]:
    """sweep.py in the runner, as the manual shows it."""
    return stack.compose("run", "--rm", "bash", "python", "sweep.py", *options, timeout=900)


def parent_and_children(stack, result) -> tuple[dict, list[dict]]:
    """The parent run sweep.py printed, and its child runs, from the REST API."""
    assert result.returncode == 0, result.stdout + result.stderr
    parent_id = re.search(r"^run ([0-9a-f]{32}) logged", result.stdout, re.M)[1]
    parent = stack.rest("runs/get", run_id=parent_id)["run"]
    children = stack.rest(
        "runs/search",
        {
            "experiment_ids": [parent["info"]["experiment_id"]],
            "filter": f"tags.mlflow.parentRunId = '{parent_id}'",
            "max_results": 1000,
        },
    ).get("runs", [])
    return parent, children


def values(run: dict, kind: str) -> dict:
    """A run's ``params`` or ``metrics`` as a dict."""
    return {item["key"]: item["value"] for item in run["data"].get(kind, [])}


def one_error_line(result) -> str:
    """The single ``error: ...`` line of a job that failed with exit 1, without a traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_the_dashboard_answers_on_loopback_and_the_scheduler_port_is_not_published(
    stack, docker_client, cluster
):
    assert requests.get(cluster, timeout=10).status_code == 200
    assert dashboard(stack.make("urls").stdout) == cluster
    (scheduler,) = dask_containers(docker_client, stack, "dask-scheduler")
    published = {
        port: bindings
        for port, bindings in scheduler.attrs["NetworkSettings"]["Ports"].items()
        if bindings
    }
    assert list(published) == ["8787/tcp"], published
    assert all(b["HostIp"] == "127.0.0.1" for b in published["8787/tcp"])
    workers = dask_containers(docker_client, stack, "dask-worker")
    assert len(workers) == 2
    for container in [scheduler, *workers]:
        host = container.attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges:true" in host["SecurityOpt"]
        assert container.attrs["Config"]["User"] == f"{stack.uid}:{stack.uid}"
        assert container.attrs["State"]["Health"]["Status"] == "healthy", container.name
    for worker in workers:
        assert worker.attrs["HostConfig"]["Memory"] == 2 * 1024**3
        assert not any(worker.attrs["NetworkSettings"]["Ports"].values())


def test_a_client_in_the_runner_sees_the_workers_and_links_the_hosts_dashboard(stack, cluster):
    result = stack.compose(
        "run",
        "--rm",
        "bash",
        "python",
        "-c",
        "from dask.distributed import Client; client = Client(); "
        "client.wait_for_workers(2, timeout=60); "
        "print(len(client.scheduler_info(n_workers=-1)['workers']), client.dashboard_link); "
        "print(client.submit(lambda: __import__('fixture_project.data').data.TARGET).result())",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", cluster, "target"]


def test_sweep_logs_a_parent_and_a_child_per_candidate_fitted_on_the_workers(stack, cluster):
    result = sweep(stack)
    assert re.search(
        r"^fitting 8 candidates x 5 folds on the Dask cluster at ", result.stdout, re.M
    )
    assert "(2 workers, dashboard http://127.0.0.1:" in result.stdout
    parent, children = parent_and_children(stack, result)
    assert len(children) == 8
    grid = set()
    for child in children:
        params, metrics = values(child, "params"), values(child, "metrics")
        assert {"n_estimators", "max_depth", "min_samples_leaf"} <= set(params)
        assert 0.5 < metrics["cv_accuracy"] <= 1 and "cv_f1_macro" in metrics
        grid.add((params["n_estimators"], params["max_depth"]))
    assert grid == {(n, d) for n in ("25", "50", "100", "200") for d in ("3", "6")}
    params, metrics = values(parent, "params"), values(parent, "metrics")
    best = max(children, key=lambda child: values(child, "metrics")["cv_accuracy"])
    assert metrics["best_cv_accuracy"] == values(best, "metrics")["cv_accuracy"]
    assert params["n_estimators"] in {"25", "50", "100", "200"} and params["folds"] == "5"
    artifacts = stack.rest("artifacts/list", run_id=parent["info"]["run_id"], path="plots")
    assert [f["path"] for f in artifacts["files"]] == ["plots/cv_accuracy_by_n_estimators.png"]
    assert re.search(r"^model: models:/m-[0-9a-f]+$", result.stdout, re.M)


def test_the_notebook_searches_on_the_cluster_and_links_the_hosts_dashboard(stack, cluster):
    result = stack.execute_notebook("notebooks/search_on_dask.ipynb", "--stdout")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fitting on the Dask cluster at tcp://dask-scheduler:8786 (2 workers" in result.stdout
    # The client's own view in the notebook links the dashboard on the host
    assert f'href="{cluster}"' in result.stdout.replace('\\"', '"'), result.stdout[-3000:]
    assert re.search(r"run [0-9a-f]{32} logged with 8 child runs", result.stdout)


def test_the_search_finishes_with_every_child_when_a_worker_is_killed(
    stack, docker_client, cluster
):
    command = ["docker", "compose", "run", "--rm", "-T", "bash", "python", "sweep.py", *SLOW_GRID]
    job = subprocess.Popen(
        command, cwd=stack.directory, env=stack.env, stdout=subprocess.PIPE, text=True
    )
    try:
        # The search has started when the scheduler has tasks processing
        counts = cluster.replace("/status", "/json/counts.json")
        deadline = time.monotonic() + 120
        while requests.get(counts, timeout=10).json().get("processing", 0) == 0:
            assert job.poll() is None and time.monotonic() < deadline, "no task ever ran"
            time.sleep(0.5)
        victim = dask_containers(docker_client, stack, "dask-worker")[0]
        victim.kill()
        assert job.poll() is None, "the search ended before the worker was killed"
        output, _ = job.communicate(timeout=600)
    finally:
        job.kill()
    assert job.returncode == 0, output
    victim.reload()
    assert victim.status == "exited"
    result = subprocess.CompletedProcess(command, job.returncode, output, "")
    _, children = parent_and_children(stack, result)
    assert len(children) == 8
    assert all("cv_accuracy" in values(child, "metrics") for child in children)


def test_a_client_with_other_package_versions_is_refused_in_one_line(stack, cluster):
    # toolz is one of the packages Dask compares between client, scheduler and workers; its
    # older release is a wheel shipped with the tests (no download), at /project in the runner
    result = stack.compose(
        "run",
        "--rm",
        "bash",
        "bash",
        "-c",
        "pip install --quiet --disable-pip-version-check --no-index --no-deps "
        f"{WHEELS}/toolz-1.0.0-py3-none-any.whl && python sweep.py",
        timeout=900,
    )
    line = one_error_line(result)
    assert "Mismatched versions found" in line and "toolz (client 1.0.0" in line, line


def test_sweep_says_in_one_line_when_the_scheduler_is_down(stack, cluster):
    stopped = stack.compose("--profile", "dask", "stop", "dask-scheduler")
    assert stopped.returncode == 0, stopped.stderr
    line = one_error_line(sweep(stack))
    assert line.startswith("error: the Dask scheduler at tcp://dask-scheduler:8786 "), line
    assert "make up WORKERS=N" in line


def test_make_up_without_workers_removes_the_cluster_and_sweep_fits_locally(
    stack, docker_client, cluster
):
    output = up(stack)
    assert "Dask:" not in output
    assert dask_containers(docker_client, stack) == []
    result = sweep(stack, "--n-estimators", "5,10", "--max-depth", "2,3", "--folds", "3")
    assert re.search(r"^fitting 4 candidates x 3 folds locally ", result.stdout, re.M)
    _, children = parent_and_children(stack, result)
    assert len(children) == 4
