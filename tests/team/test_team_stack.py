"""The team stack end to end (make up TEAM=1): PostgreSQL as backend store, the S3 object store
as artifact store behind the tracking server, authentication on; credentials only where they
are needed and never in an image or a log; nothing but the tracking server published."""

from __future__ import annotations

import json
import re

import requests

from tests.team.helpers import BUCKET, TEAM_SERVICES, TeamStack, sha256

SERVER_SERVICES = ("mlflow", *TEAM_SERVICES)


def test_team_stack_comes_up_healthy(team_stack: TeamStack):
    for service in SERVER_SERVICES:
        container = team_stack.container(service)
        state = container.attrs["State"]
        assert (state["Status"], state["Health"]["Status"]) == ("running", "healthy"), service
    assert requests.get(f"{team_stack.mlflow_url}/health", timeout=10).status_code == 200


def test_server_answers_401_without_valid_credentials(team_stack: TeamStack):
    url = f"{team_stack.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    user, password = team_stack.credentials
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(url, auth=(user, password + "x"), timeout=30).status_code == 401
    assert requests.get(url, auth=(user, password), timeout=30).status_code == 200


def test_run_from_the_runner_lands_in_postgres_and_its_artifacts_in_the_bucket(
    team_stack: TeamStack,
):
    result = team_stack.compose("run", "--rm", "bash", "python", "train.py", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_id = re.search(r"^run ([0-9a-f]{32}) logged", result.stdout, re.MULTILINE)[1]

    # The backend store is PostgreSQL: the run is a row of its runs table, finished
    rows = team_stack.psql(f"SELECT status, artifact_uri FROM runs WHERE run_uuid = '{run_id}'")
    assert len(rows) == 1 and rows[0][0] == "FINISHED", rows
    # Proxied artifacts: the client was given the server's scheme, never the bucket
    assert rows[0][1].startswith("mlflow-artifacts:/"), rows

    # The same run through the REST API, logged in
    auth = team_stack.credentials
    api = f"{team_stack.mlflow_url}/api/2.0/mlflow"
    run = requests.get(f"{api}/runs/get", params={"run_id": run_id}, auth=auth, timeout=120)
    assert run.status_code == 200, run.text
    assert {m["key"] for m in run.json()["run"]["data"]["metrics"]} >= {"accuracy", "f1_macro"}

    # The artifacts are objects in the bucket; one downloads intact through the server
    objects = team_stack.bucket_objects(prefix="artifacts/")
    run_objects = {key: digest for key, digest in objects.items() if f"/{run_id}/" in key}
    plot = next((key for key in run_objects if key.endswith("confusion_matrix.png")), None)
    assert plot, f"no plot of run {run_id} in s3://{BUCKET}: {sorted(objects)}"
    path = plot.removeprefix("artifacts/")
    download = requests.get(
        f"{team_stack.mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{path}", auth=auth, timeout=120
    )
    assert download.status_code == 200, download.text[:500]
    assert download.content.startswith(b"\x89PNG")
    assert sha256(download.content) == run_objects[plot]


def test_database_and_object_store_ports_are_not_published(team_stack: TeamStack):
    for service in TEAM_SERVICES:
        attrs = team_stack.container(service).attrs
        assert not attrs["HostConfig"]["PortBindings"], service
        published = {port: b for port, b in attrs["NetworkSettings"]["Ports"].items() if b}
        assert published == {}, f"{service} publishes {published}"
        assert attrs["HostConfig"]["NetworkMode"] != "host", service
    # The tracking server stays the only way in, on loopback
    mlflow_ports = team_stack.container("mlflow").attrs["NetworkSettings"]["Ports"]
    bindings = [b for bound in mlflow_ports.values() if bound for b in bound]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings), mlflow_ports


def test_only_the_tracking_server_holds_the_store_credentials(team_stack: TeamStack):
    config = team_stack.compose("--profile", "*", "config", "--format", "json")
    assert config.returncode == 0, config.stderr
    services = json.loads(config.stdout)["services"]
    secrets = team_stack.secrets()
    holders = {
        key: {
            name
            for name, service in services.items()
            if any(value in str(v) for v in (service.get("environment") or {}).values())
        }
        for key, value in secrets.items()
        if key in ("POSTGRES_PASSWORD", "MLSTACK_S3_ACCESS_KEY", "MLSTACK_S3_SECRET_KEY")
    }
    # Clients (jupyter, bash, the Dask services, serve) upload through the tracking server
    assert holders == {
        "POSTGRES_PASSWORD": {"postgres", "mlflow"},
        "MLSTACK_S3_ACCESS_KEY": {"s3", "mlflow"},
        "MLSTACK_S3_SECRET_KEY": {"s3", "mlflow"},
    }


def test_no_credential_in_any_image_history_environment_or_log(team_stack: TeamStack):
    secrets = team_stack.secrets()
    assert all(len(value) >= 12 for value in secrets.values()), "a secret is missing in .env"
    for service in SERVER_SERVICES:
        image = team_stack.container(service).image
        history = " ".join(layer.get("CreatedBy", "") for layer in image.history())
        config = json.dumps(image.attrs["Config"])
        for key, value in secrets.items():
            assert value not in history, f"{key} in the history of {service}'s image"
            assert value not in config, f"{key} in the config of {service}'s image"
    logs = team_stack.compose("--profile", "*", "logs", "--no-color")
    assert logs.returncode == 0, logs.stderr
    for key, value in secrets.items():
        assert value not in logs.stdout + logs.stderr, f"{key} in the services' logs"


def test_team_services_run_non_root_and_hardened(team_stack: TeamStack):
    for service in SERVER_SERVICES:
        container = team_stack.container(service)
        processes = container.top(ps_args="-o pid,uid,comm")
        column = processes["Titles"].index("UID")
        uids = {int(row[column]) for row in processes["Processes"]}
        assert uids and 0 not in uids, f"{service} runs processes as root: {processes}"
        host_config = container.attrs["HostConfig"]
        assert host_config["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in host_config["SecurityOpt"], service
        assert host_config["ReadonlyRootfs"], service
        # A crash (not a docker stop) brings the service back
        assert host_config["RestartPolicy"]["Name"] == "unless-stopped", service
