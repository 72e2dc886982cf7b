"""From a registered model to production: `make release` builds the image of a model from a real
training run; the image serves what the model predicts with no tracking server and no network,
answers bad input with 400 in one line, runs non-root on a read-only root filesystem, tells where
it comes from, stops on SIGTERM, and goes to a registry; monitor.py finds the drift in what it
served."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import time

import mlflow
import pandas as pd
import pytest
import requests
from sklearn.datasets import load_wine

from tests.helpers import run, wait_for

# A registered model of its own, so its first version is this module's
MODEL = "fixture-release"


def serve(image: str, *options: str) -> str:
    """Start the release image as a user does (`docker run -d --read-only -p 127.0.0.1::8080`),
    with ``options`` before the image; its container id. Not removed on exit, so its logs stay
    readable; :func:`stop` removes it."""
    result = run(
        [
            "docker",
            "run",
            "--detach",
            "--read-only",
            "--publish",
            "127.0.0.1::8080",
            *options,
            image,
        ]
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def stop(container: str) -> subprocess.CompletedProcess[str]:
    """`docker stop` (SIGTERM, SIGKILL after 10 s), then remove the container and its volume."""
    stopped = run(["docker", "stop", "--time", "10", container], timeout=60)
    run(["docker", "rm", "--force", "--volumes", container])
    return stopped


def address(container: str) -> str:
    """The container's /invocations base URL on loopback, once /ping answers."""
    port = run(["docker", "port", container, "8080/tcp"]).stdout.split()[0]
    url = f"http://{port}"

    def answers() -> bool:
        with contextlib.suppress(requests.ConnectionError):
            return requests.get(f"{url}/ping", timeout=2).status_code == 200
        return False

    wait_for(answers, 60, f"the release container {container[:12]}")
    return url


def split(frame: pd.DataFrame) -> dict:
    """``frame`` as MLflow's ``dataframe_split`` request body."""
    return {"dataframe_split": frame.to_dict(orient="split", index=False)}


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    """The wine data set's features, as the fixture project's train.py reads them."""
    return load_wine(as_frame=True).data


@pytest.fixture(scope="module")
def released(stack, docker_client) -> str:
    """A model trained and registered by the fixture project's train.py, released with `make
    release`: the image reference make printed on its last line. Removed at the end."""
    trained = stack.compose(
        "run", "--rm", "bash", "python", "train.py", "--n-estimators", "20",
        "--register-model", MODEL, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stdout + trained.stderr
    result = stack.make("release", f"MODEL=models:/{MODEL}/1", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    image = result.stdout.strip().splitlines()[-1]
    assert image == f"{stack.project}-model-{MODEL}:1", result.stdout
    yield image
    # Every image the module made, by the title make release labels it with: the release with
    # its commit tag and the registry's copies, and the first build, left untagged when the
    # release with REGISTRY= built the image again and took its tags
    title = f"org.opencontainers.image.title={stack.project}-model-{MODEL}"
    for found in docker_client.images.list(filters={"label": title}):
        docker_client.images.remove(found.id, force=True)


@pytest.fixture(scope="module")
def server(released) -> str:
    """The released image serving on a loopback port; its base URL."""
    container = serve(released)
    try:
        yield address(container)
    finally:
        stop(container)


def test_release_predicts_as_the_model_with_the_tracking_server_stopped(stack, server, features):
    # MLflow's client on the host, with its defaults, loads the registered model
    mlflow.set_tracking_uri(stack.urls["mlflow"])
    try:
        expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(features).tolist()
    finally:
        mlflow.set_tracking_uri(None)
    assert stack.compose("stop", "mlflow").returncode == 0
    try:
        answer = requests.post(f"{server}/invocations", json=split(features), timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected
        # CSV, as `mlflow models serve` takes it
        answer = requests.post(
            f"{server}/invocations",
            data=features.to_csv(index=False),
            headers={"Content-Type": "text/csv"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected
    finally:
        assert stack.compose("start", "mlflow").returncode == 0
        # Back and healthy for the tests after this one (whatever else the stack runs)
        wait_for(
            lambda: "(healthy)" in stack.compose("ps", "--format", "{{.Status}}", "mlflow").stdout,
            180,
            "the tracking server's restart",
        )


@pytest.mark.parametrize(
    "case",
    ["missing column", "wrong type", "malformed JSON", "malformed CSV", "no body"],
)
def test_bad_input_answers_400_in_one_json_line(server, features, case):
    rows = features.head(3)
    if case == "missing column":
        answer = requests.post(
            f"{server}/invocations", json=split(rows.drop(columns=["alcohol"])), timeout=30
        )
    elif case == "wrong type":
        answer = requests.post(
            f"{server}/invocations", json=split(rows.assign(alcohol="strong")), timeout=30
        )
    elif case == "malformed JSON":
        answer = requests.post(
            f"{server}/invocations",
            data='{"dataframe_split": {"columns": ["alcohol"',
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
    elif case == "malformed CSV":
        answer = requests.post(
            f"{server}/invocations",
            data=b'alcohol,"ash\n\x00\xff',
            headers={"Content-Type": "text/csv"},
            timeout=30,
        )
    else:
        answer = requests.post(
            f"{server}/invocations", headers={"Content-Type": "application/json"}, timeout=30
        )
    assert answer.status_code == 400, (answer.status_code, answer.text)
    error = answer.json()
    assert set(error) == {"error_code", "message"}, error
    assert "\n" not in error["message"] and "Traceback" not in error["message"], error
    if case in ("missing column", "wrong type"):
        assert "alcohol" in error["message"], error


def test_release_image_is_slim_non_root_read_only_labelled_and_stops_on_sigterm(
    stack, released, docker_client
):
    image = docker_client.images.get(released)
    labels = image.labels
    assert labels["mlstack.model.name"] == MODEL and labels["mlstack.model.version"] == "1"
    assert labels["mlstack.model.uri"] == f"models:/{MODEL}/1"
    version = stack.rest("registered-models/get", name=MODEL)["registered_model"]
    run_id = version["latest_versions"][0]["run_id"]
    assert labels["mlstack.model.run_id"] == run_id
    run_tags = {
        t["key"]: t["value"] for t in stack.rest("runs/get", run_id=run_id)["run"]["data"]["tags"]
    }
    assert labels["org.opencontainers.image.revision"] == run_tags["mlflow.source.git.commit"]
    assert labels["mlstack.version"] and labels["org.opencontainers.image.created"]
    # Only what the model needs: no Jupyter, no tracking server
    listing = run(["docker", "run", "--rm", released, "uv", "pip", "list"]).stdout
    assert "mlflow-skinny" in listing and "scikit-learn" in listing, listing
    for absent in ("jupyterlab", "mlflow ", "evidently", "psycopg"):
        assert f"\n{absent}" not in listing, absent
    container = serve(released)
    try:
        address(container)
        assert docker_client.containers.get(container).attrs["HostConfig"]["ReadonlyRootfs"]
        uid = run(["docker", "exec", container, "id", "-u"]).stdout.strip()
        assert uid != "0", uid
        start = time.monotonic()
        stopped = run(["docker", "stop", "--time", "10", container], timeout=60)
        elapsed = time.monotonic() - start
        state = docker_client.containers.get(container).attrs["State"]
    finally:
        stop(container)
    assert stopped.returncode == 0, stopped.stderr
    # Exit status 137 would be SIGKILL after the 10 s grace period
    assert elapsed < 10 and state["ExitCode"] != 137, (elapsed, state)


def test_release_serves_with_no_network_at_all(released):
    container = run(["docker", "run", "--detach", "--read-only", "--network", "none", released])
    assert container.returncode == 0, container.stderr
    identifier = container.stdout.strip()
    try:
        smoke = run(["docker", "exec", identifier, "python", "-m", "mlstack.serving", "smoke"])
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        assert "predicts the input example" in smoke.stdout
    finally:
        stop(identifier)


def test_release_with_registry_pushes_an_image_that_serves_when_pulled(stack, registry, released):
    result = stack.make("release", f"MODEL=models:/{MODEL}/1", f"REGISTRY={registry}", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pushed = result.stdout.strip().splitlines()[-1]
    assert pushed == f"{registry}/{released}"
    assert run(["docker", "image", "rm", pushed]).returncode == 0
    pulled = run(["docker", "pull", pushed], timeout=300)
    assert pulled.returncode == 0, pulled.stderr
    container = serve(pushed)
    try:
        assert requests.get(f"{address(container)}/ping", timeout=10).status_code == 200
    finally:
        stop(container)
        run(["docker", "image", "rm", pushed])


def monitor(
    stack, served: pd.DataFrame, folder: str, cut_short: bool = False
) -> subprocess.CompletedProcess[str]:
    """Serve ``served`` in batches of 20 rows from a release container that records its requests
    in ``folder`` of the project (as the project's UID), then run monitor.py on that folder;
    with ``cut_short``, a record's last line first cut in half, as a killed server leaves it."""
    records = stack.directory / "project" / folder
    records.mkdir(parents=True)
    run(["chown", f"{stack.uid}:{stack.uid}", str(records)])
    container = serve(
        f"{stack.project}-model-{MODEL}:1",
        "--user", f"{stack.uid}:{stack.uid}",
        "--volume", f"{records}:/var/log/model",
    )  # fmt: skip
    try:
        url = address(container)
        for start in range(0, len(served), 20):
            batch = split(served.iloc[start : start + 20])
            assert requests.post(f"{url}/invocations", json=batch, timeout=30).status_code == 200
    finally:
        stop(container)
    lines = [json.loads(line) for path in records.glob("*.jsonl") for line in path.open()]
    assert sum(len(line["inputs"]["data"]) for line in lines) == len(served)
    assert all(line["request_id"] and line["time"] and line["outputs"] for line in lines)
    # Written for the server's user only: they hold every request's raw inputs
    assert {oct(path.stat().st_mode & 0o777) for path in records.glob("*.jsonl")} == {"0o600"}
    if cut_short:
        path = next(records.glob("*.jsonl"))
        text = path.read_text()
        path.write_text(text + text.splitlines()[0][:100])
    return stack.compose(
        "run", "--rm", "bash", "python", "monitor.py", "--model", f"models:/{MODEL}/1",
        "--requests", folder, timeout=600,
    )  # fmt: skip


def monitoring_run(stack, result: subprocess.CompletedProcess[str]) -> dict:
    """The monitoring run monitor.py printed the link of, from the REST API."""
    run_id = re.search(r"/runs/([0-9a-f]{32})", result.stdout)[1]
    return stack.rest("runs/get", run_id=run_id)["run"]


def test_monitoring_finds_no_drift_in_training_data_and_the_drifted_column(
    stack, released, features
):
    same = monitor(stack, features, "monitoring/training", cut_short=True)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "(none)" in same.stdout, same.stdout
    assert "skipped 1 cut-short last line" in same.stdout + same.stderr
    drifted = monitor(stack, features.assign(alcohol=features["alcohol"] * 3), "monitoring/drift")
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    assert "(alcohol)" in drifted.stdout, drifted.stdout
    run_ = monitoring_run(stack, drifted)
    metrics = {m["key"]: m["value"] for m in run_["data"]["metrics"]}
    assert metrics["drifted_columns"] == 1 and metrics["rows"] == len(features)
    assert metrics["drifted_columns_share"] == pytest.approx(1 / len(features.columns))
    assert {f"drift_score.{column}" for column in features.columns} <= set(metrics)
    tags = {t["key"]: t["value"] for t in run_["data"]["tags"]}
    assert tags["model_name"] == MODEL and tags["model_version"] == "1"
    assert tags["drifted_columns"] == "alcohol"
    files = stack.rest("artifacts/list", run_id=run_["info"]["run_id"]).get("files", [])
    assert "drift_report.html" in {f["path"] for f in files}
    report = requests.get(
        f"{stack.urls['mlflow']}/get-artifact",
        params={"run_uuid": run_["info"]["run_id"], "path": "drift_report.html"},
        timeout=30,
    )
    # Evidently's page, with the column's data
    assert report.status_code == 200 and "<html" in report.text and "alcohol" in report.text


def raw_request(url: str, head: str, body: bytes = b"") -> socket.socket:
    """A connection to the server at ``url`` that sent ``head`` (the request line and headers,
    without the blank line) and ``body``: a client that may never send the rest."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = socket.create_connection((host, int(port)), timeout=30)
    connection.sendall(head.encode() + b"\r\n\r\n" + body)
    return connection


def status_of(connection: socket.socket) -> int:
    """The HTTP status the server answered on ``connection``."""
    answer = connection.recv(4096).decode(errors="replace")
    return int(answer.split(" ", 2)[1])


def test_release_refuses_big_bodies_and_batches_and_sheds_excess_load(released, features):
    container = serve(
        f"{released}",
        "--memory", "768m",
        "--env", "MLSTACK_SERVE_WORKERS=1",
        "--env", "MLSTACK_SERVE_MAX_BODY_MB=1",
        "--env", "MLSTACK_SERVE_MAX_ROWS=100",
        "--env", "MLSTACK_SERVE_MAX_CONCURRENCY=3",
        "--env", "MLSTACK_REQUEST_LOG=",
    )  # fmt: skip
    try:
        url = address(container)
        json_head = "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
        # A 1 GiB body, declared: 413 before any of it is read
        declared = raw_request(url, f"{json_head}\r\nContent-Length: {2**30}")
        assert status_of(declared) == 413
        # A body with no declared length, streamed in 1 MiB chunks: 413 once past the limit,
        # while the client has more to send
        streamed = raw_request(url, f"{json_head}\r\nTransfer-Encoding: chunked")
        for _ in range(2):
            streamed.sendall(b"100000\r\n" + b" " * 2**20 + b"\r\n")
        assert status_of(streamed) == 413
        declared.close()
        streamed.close()
        answer = requests.post(f"{url}/invocations", json=split(features.iloc[:101]), timeout=30)
        assert answer.status_code == 400 and "MLSTACK_SERVE_MAX_ROWS" in answer.json()["message"]
        # Three requests whose bodies never finish hold all three places: the next request is
        # one too many, 503 at once, whether or not uvicorn has counted its own connection yet
        # (with two held it sometimes had not, under load)
        body = json.dumps(split(features.iloc[:1]))
        held = [
            raw_request(url, f"{json_head}\r\nContent-Length: {len(body)}", b"{") for _ in "abc"
        ]
        time.sleep(1)
        json_type = {"Content-Type": "application/json"}
        excess = requests.post(f"{url}/invocations", data=body, headers=json_type, timeout=30)
        assert excess.status_code == 503
        for connection in held:
            connection.close()
        time.sleep(1)
        answer = requests.post(f"{url}/invocations", data=body, headers=json_type, timeout=30)
        assert answer.status_code == 200, answer.text
        state = json.loads(run(["docker", "inspect", container]).stdout)[0]["State"]
        assert state["Running"] and not state["OOMKilled"]
        # The one worker was never restarted: uvicorn logs each worker it starts
        logs = run(["docker", "logs", container])
        assert (logs.stdout + logs.stderr).count("Started server process") == 1
    finally:
        stop(container)


def test_a_timed_out_prediction_restarts_its_worker_and_the_server_goes_on(released, features):
    container = serve(
        released, "--env", "MLSTACK_SERVE_TIMEOUT=0.2", "--env", "MLSTACK_REQUEST_LOG="
    )
    try:
        url = address(container)
        # About 90,000 rows (under the 100,000 of MLSTACK_SERVE_MAX_ROWS): parsed and predicted
        # in well over 0.2 s
        batch = pd.concat([features] * 506, ignore_index=True)
        answer = requests.post(f"{url}/invocations", json=split(batch), timeout=120)
        assert answer.status_code == 504, answer.text
        assert answer.json()["error_code"] == "DEADLINE_EXCEEDED"

        def logs() -> str:
            found = run(["docker", "logs", container])
            return found.stdout + found.stderr

        # Two workers started, then a third in place of the one whose prediction ran over
        wait_for(lambda: logs().count("Started server process") == 3, 120, "a fresh worker")
        assert "this worker restarts once its other requests are answered" in logs()
        for _ in range(4):
            small = requests.post(f"{url}/invocations", json=split(features.iloc[:5]), timeout=30)
            assert small.status_code == 200, small.text
    finally:
        stop(container)


def test_release_request_records_rotate_and_stay_bounded(stack, released, features, tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    run(["chown", f"{stack.uid}:{stack.uid}", str(records)])
    container = serve(
        f"{released}",
        "--user", f"{stack.uid}:{stack.uid}",
        "--volume", f"{records}:/var/log/model",
        "--env", "MLSTACK_SERVE_WORKERS=1",
        "--env", "MLSTACK_REQUEST_LOG_MAX_MB=0.01",
        "--env", "MLSTACK_REQUEST_LOG_FILES=3",
    )  # fmt: skip
    try:
        url = address(container)
        for _ in range(40):
            batch = split(features.iloc[:20])
            assert requests.post(f"{url}/invocations", json=batch, timeout=30).status_code == 200
    finally:
        stop(container)
    files = sorted(records.glob("*.jsonl"))
    assert len(files) == 3, files
    assert all(path.stat().st_size < 0.01 * 2**20 + 20_000 for path in files)
