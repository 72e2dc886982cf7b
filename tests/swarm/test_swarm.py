"""The stack on a Docker Swarm of one node: our own registry image on a loopback port, `make push`
into it, `make swarm-up WORKERS=1` then 2, sweep.py inside the swarm logging a parent and its
children to the swarm's MLflow, `make swarm-down` keeping the volumes. The module leaves the
engine as it found it: it leaves the swarm only if it created it, and removes the stack, the
registry, the volumes, the node label and the image tags it added."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import stat
import subprocess
import time

import docker
import pytest
import requests
from dotenv import dotenv_values

from tests.helpers import (
    Project,
    image_ref,
    image_settings,
    private_copy,
    project_resources,
    run,
    unique_name,
    wait_for,
)
from tests.team.helpers import SECRET_KEYS

pytestmark = [pytest.mark.swarm, pytest.mark.xdist_group("swarm")]

# The node label that places MLflow (scripts/stackctl/swarm_stack.py)
MLFLOW_LABEL = "mlstack.mlflow"
# A grid of 8 candidates that fits in seconds (sweep.py's default takes minutes on 2 cores)
SMALL_GRID = ("--n-estimators", "5,10,20,40", "--max-depth", "2,3", "--folds", "3")


def swarm_state(client: docker.DockerClient) -> str:
    """``inactive``, ``active``, ... : this engine's Swarm.LocalNodeState."""
    return client.info()["Swarm"]["LocalNodeState"]


def labelled_nodes(client: docker.DockerClient) -> list[str]:
    """IDs of the swarm's nodes that carry the MLflow label."""
    return [
        node.id
        for node in client.nodes.list()
        if node.attrs["Spec"].get("Labels", {}).get(MLFLOW_LABEL) == "true"
    ]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line of a command that failed."""
    assert result.returncode != 0, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


HELLO_JOB = """
[[job]]
name = "hello"
command = "python -c 'print(42 * 2)'"
cron = "0 0 1 1 *"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory, test_uid, docker_client, built_images) -> Project:
    """A copy of the project (its own compose project name, owned by the non-root UID) with its
    images built; at the end its stack, volumes, gateway and images are removed."""
    directory, env = private_copy(tmp_path_factory.mktemp("swarm"), "swarm", test_uid)
    # A job of the user's own for the scheduled jobs on the swarm (make swarm-up SCHEDULE=1)
    schedule = directory / "project" / "schedules.toml"
    schedule.write_text(schedule.read_text() + HELLO_JOB)
    project = Project(directory, env)
    try:
        built = project.make("build")
        assert built.returncode == 0, built.stderr[-3000:]
        yield project
    finally:
        stack = f"{project.name}-swarm"
        if swarm_state(docker_client) == "active":
            project.make("swarm-down", timeout=300)
        for container in docker_client.containers.list(
            all=True, filters={"label": f"mlstack.swarm.stack={stack}"}
        ):
            container.remove(force=True)
        for volume in docker_client.volumes.list(filters={"name": f"{stack}_"}):
            volume.remove(force=True)
        # The registry's tags and digests that make push added (the images keep their others)
        stack_images = "|".join(
            re.escape(image_ref(name).split(":")[0]) for name in ("mlflow", "scheduler")
        )
        pushed = re.compile(
            rf"127\.0\.0\.1:\d+/({re.escape(project.name)}-|(?:{stack_images})[:@])"
        )
        for image in docker_client.images.list():
            for reference in image.tags + image.attrs.get("RepoDigests", []):
                if pushed.match(reference):
                    with contextlib.suppress(docker.errors.NotFound):
                        docker_client.images.remove(reference)
        project.down()
        left = project_resources(docker_client, project.name)
        assert not left, f"teardown left {left}"


@pytest.fixture(scope="module")
def swarm(docker_client):
    """This engine as a swarm manager: a one-node swarm on loopback made for the module when the
    engine is in none (left at the end, with the gateway bridge it made), else the existing one
    (the MLflow label removed again if the tests added it)."""
    state = swarm_state(docker_client)
    created = state == "inactive"
    had_bridge = bool(docker_client.networks.list(names=["docker_gwbridge"]))
    if created:
        docker_client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
    elif not docker_client.info()["Swarm"].get("ControlAvailable"):
        pytest.fail(f"this engine is a swarm worker ({state}); run the swarm tests on a manager")
    labelled_before = labelled_nodes(docker_client)
    try:
        yield
    finally:
        if created:
            docker_client.swarm.leave(force=True)
            if not had_bridge:
                for network in docker_client.networks.list(names=["docker_gwbridge"]):
                    network.remove()
        else:
            for node in set(labelled_nodes(docker_client)) - set(labelled_before):
                run(["docker", "node", "update", "--label-rm", MLFLOW_LABEL, node])
    assert swarm_state(docker_client) == state


@pytest.fixture(scope="module")
def deployed(project, registry, swarm) -> dict[str, str]:
    """`make swarm-up WORKERS=1 SCHEDULE=1` once for the module; the URLs it printed."""
    result = project.make(
        "swarm-up", f"REGISTRY={registry}", "WORKERS=1", "SCHEDULE=1", timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return urls(result.stdout)


def urls(output: str) -> dict[str, str]:
    """The MLflow, Jupyter, Dask and Schedules URLs `make swarm-up` printed."""
    found = dict(re.findall(r"^(MLflow|Jupyter|Dask|Schedules):\s+(http\S+)", output, re.M))
    assert set(found) == {"MLflow", "Jupyter", "Dask", "Schedules"}, output
    return found


def services(
    client: docker.DockerClient, project: Project
) -> dict[str, docker.models.services.Service]:
    """The stack's Swarm services, by their compose.yaml name."""
    stack = f"{project.name}-swarm"
    found = client.services.list(filters={"label": f"com.docker.stack.namespace={stack}"})
    return {s.name.removeprefix(f"{stack}_"): s for s in found}


def test_push_and_swarm_up_refuse_bad_input_in_one_line(project, docker_client):
    line = one_error_line(project.make("push"))
    assert "make push REGISTRY=127.0.0.1:5000" in line, line
    line = one_error_line(project.make("push", "REGISTRY=http://127.0.0.1:5000"))
    assert "is not host:port" in line, line
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    line = one_error_line(project.make("push", f"REGISTRY=127.0.0.1:{closed}"))
    assert line.startswith(f"error: no registry answers at 127.0.0.1:{closed};"), line
    line = one_error_line(project.make("swarm-up", "WORKERS=0", "REGISTRY=127.0.0.1:5000"))
    assert "WORKERS=0 is not a number of Dask workers >= 1" in line, line
    if swarm_state(docker_client) == "inactive":
        line = one_error_line(project.make("swarm-up", "REGISTRY=127.0.0.1:5000"))
        assert "docker swarm init --advertise-addr" in line, line


def test_push_puts_the_project_and_stack_images_in_the_registry(project, registry):
    result = project.make("push", f"REGISTRY={registry}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    catalog = requests.get(f"http://{registry}/v2/_catalog", timeout=10).json()["repositories"]
    version = image_settings()["MLSTACK_VERSION"]
    mlflow = image_ref("mlflow").rsplit(":", 1)[0]
    assert sorted(catalog) == sorted([f"{project.name}-jupyter", f"{project.name}-bash", mlflow])
    for repository in catalog:
        tags = requests.get(f"http://{registry}/v2/{repository}/tags/list", timeout=10).json()
        assert tags["tags"] == [version], tags


def test_swarm_up_runs_the_stack_from_the_registry_hardened_and_on_loopback_only(
    project, registry, docker_client, deployed, test_uid
):
    found = services(docker_client, project)
    assert sorted(found) == [
        "dask-scheduler", "dask-worker", "jupyter", "mlflow", "scheduler", "scheduler-worker",
    ]  # fmt: skip
    for name, service in found.items():
        spec = service.attrs["Spec"]
        container = spec["TaskTemplate"]["ContainerSpec"]
        assert container["Image"].startswith(f"{registry}/"), name
        assert not service.attrs["Endpoint"].get("Ports"), f"{name} publishes a port"
        assert container.get("CapabilityDrop") == ["ALL"], name
        if name not in ("mlflow", "scheduler"):
            assert container["User"] == f"{test_uid}:{test_uid}", name
    for name in ("mlflow", "scheduler"):
        constraints = found[name].attrs["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
        assert constraints == [f"node.labels.{MLFLOW_LABEL} == true"]
    assert labelled_nodes(docker_client), "no node carries the MLflow label"
    assert found["dask-worker"].attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 1
    # The gateway publishes on loopback only; the scheduler's port 8786 is not among them
    (gateway,) = docker_client.containers.list(
        filters={"label": f"mlstack.swarm.stack={project.name}-swarm"}
    )
    bindings = gateway.attrs["HostConfig"]["PortBindings"]
    assert sorted(bindings) == ["4200/tcp", "5000/tcp", "8787/tcp", "8888/tcp"]
    assert {b["HostIp"] for port in bindings.values() for b in port} == {"127.0.0.1"}
    assert requests.get(f"{deployed['MLflow']}/health", timeout=10).text == "OK"
    assert requests.get(deployed["Dask"], timeout=10).status_code == 200
    # The scheduling engine's API, behind its login also on the swarm
    engine = f"{deployed['Schedules']}/api/deployments/filter"
    assert requests.post(engine, json={}, timeout=10).status_code == 401
    jupyter = deployed["Jupyter"].replace("/lab?", "/api/status?")
    assert requests.get(jupyter, timeout=10).status_code == 200
    assert requests.get(jupyter.split("?")[0], timeout=10).status_code == 403
    # .env's secrets are Swarm secrets: in no service's spec (docker service inspect), not in
    # the stack file, and the services that need them work (Jupyter's token above, MLflow's
    # admin password for its auth app)
    secrets = [
        v
        for k, v in dotenv_values(project.directory / ".env").items()
        if k in SECRET_KEYS + ("JUPYTER_TOKEN",) and v
    ]
    assert secrets
    for name, service in found.items():
        spec = json.dumps(service.attrs["Spec"])
        assert not [value for value in secrets if value in spec], name
    assert found["jupyter"].attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    stack_file = project.directory / ".mlstack/swarm/stack.json"
    assert not [value for value in secrets if value in stack_file.read_text()]
    assert not list((project.directory / ".mlstack/swarm/secrets").iterdir())
    # The stack file: private, and in a folder git ignores
    assert stat.S_IMODE(stack_file.stat().st_mode) == 0o600
    ignored = run(["git", "check-ignore", str(stack_file)], project.directory, project.env)
    assert ignored.returncode == 0, ignored.stderr


def test_scheduled_jobs_run_on_the_swarms_worker(project, deployed):
    listed = project.make("schedules")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^hello\s+0 0 1 1 \* UTC\s", listed.stdout, re.M), listed.stdout
    ran = project.make("schedule-run", "JOB=hello", timeout=300)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert re.search(r"^job hello: run \S+ \(\S+\): Completed$", ran.stdout, re.M)
    # No password went into a file left behind
    assert not (project.directory / ".mlstack/swarm/scheduler.env").exists()


def test_the_workers_rescale_and_a_sweep_in_the_swarm_logs_a_child_per_candidate(
    project, registry, docker_client, deployed
):
    result = project.make("swarm-up", f"REGISTRY={registry}", "WORKERS=2", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert urls(result.stdout)["MLflow"] == deployed["MLflow"]
    worker = services(docker_client, project)["dask-worker"]
    assert worker.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
    running = [t for t in worker.tasks() if t["Status"]["State"] == "running"]
    assert len(running) == 2
    (jupyter,) = docker_client.containers.list(
        filters={"label": f"com.docker.swarm.service.name={project.name}-swarm_jupyter"}
    )
    code, output = jupyter.exec_run(["python", "sweep.py", *SMALL_GRID])
    output = output.decode()
    assert code == 0, output[-3000:]
    assert (
        "fitting 8 candidates x 3 folds on the Dask cluster at tcp://dask-scheduler:8786 (2 workers"
        in output
    ), output
    parent_id = re.search(r"^run ([0-9a-f]{32}) logged", output, re.M)[1]
    api = f"{deployed['MLflow']}/api/2.0/mlflow"
    parent = requests.get(f"{api}/runs/get", params={"run_id": parent_id}, timeout=30).json()
    children = requests.post(
        f"{api}/runs/search",
        json={
            "experiment_ids": [parent["run"]["info"]["experiment_id"]],
            "filter": f"tags.mlflow.parentRunId = '{parent_id}'",
            "max_results": 100,
        },
        timeout=30,
    ).json()["runs"]
    assert len(children) >= 8
    for child in children:
        metrics = {m["key"]: m["value"] for m in child["data"]["metrics"]}
        params = {p["key"] for p in child["data"]["params"]}
        assert 0.5 < metrics["cv_accuracy"] <= 1 and {"n_estimators", "max_depth"} <= params


def test_swarm_down_removes_the_stack_and_keeps_the_volumes(project, docker_client, deployed):
    result = project.make("swarm-down", timeout=300)
    assert result.returncode == 0, result.stderr
    assert services(docker_client, project) == {}
    stack = f"{project.name}-swarm"
    assert not docker_client.containers.list(
        all=True, filters={"label": f"mlstack.swarm.stack={stack}"}
    )
    assert not (project.directory / ".mlstack/swarm/stack.json").exists()
    listing = docker_client.containers.run(
        image_ref("base"),
        ["ls", "/data"],
        volumes={f"{stack}_mlflow-data": {"bind": "/data", "mode": "ro"}},
        remove=True,
    )
    assert "mlflow.db" in listing.decode().split()
