"""The MLflow store is the user's lab notebook: concurrent jobs, a killed server, a crashed
process, a Docker restart, backups, restores, `destroy` and schema upgrades lose nothing."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import docker
import pytest
import requests

from tests.helpers import image_ref, restart_docker_daemon, wait_until_healthy

pytestmark = pytest.mark.stack


def search_runs(stack, filter_string: str = "") -> list[dict]:
    """Runs of the demo experiment, by the REST API at the host's mapped port."""
    base = stack.urls["mlflow"]
    experiment = requests.get(
        f"{base}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "fixture-project"},
        timeout=30,
    ).json()["experiment"]
    response = requests.post(
        f"{base}/api/2.0/mlflow/runs/search",
        json={
            "experiment_ids": [experiment["experiment_id"]],
            "filter": filter_string,
            "max_results": 1000,
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json().get("runs", [])


def metric_history(stack, run_id: str, key: str) -> list[dict]:
    """Every logged value of one metric of a run."""
    response = requests.get(
        f"{stack.urls['mlflow']}/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": key},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json().get("metrics", [])


def artifact_bytes(stack, run: dict, path: str) -> bytes:
    """An artifact of a run, downloaded through the server's artifact proxy."""
    root = run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
    response = requests.get(
        f"{stack.urls['mlflow']}/api/2.0/mlflow-artifacts/artifacts/{root}/{path}", timeout=30
    )
    assert response.status_code == 200, response.text
    return response.content


def snapshot_of_runs(stack) -> dict[str, tuple]:
    """What a user would miss: each finished run's params, metrics and plot bytes, by run id."""
    return {
        run["info"]["run_id"]: (
            sorted((p["key"], p["value"]) for p in run["data"].get("params", [])),
            sorted((m["key"], m["value"]) for m in run["data"].get("metrics", [])),
            artifact_bytes(stack, run, "plots/confusion_matrix.png"),
        )
        for run in search_runs(stack, "attributes.status = 'FINISHED'")
        if run["info"]["run_name"].startswith("safety-")
    }


def integrity_check(stack) -> str:
    """SQLite's PRAGMA integrity_check of the backend store, run inside the mlflow container."""
    result = stack.compose(
        "exec",
        "-T",
        "mlflow",
        "python",
        "-c",
        "import sqlite3; print(sqlite3.connect('file:/data/mlflow.db?mode=ro', uri=True)"
        ".execute('PRAGMA integrity_check').fetchone()[0])",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# Run in the mlflow image on the store: a write cut off by the end of its process (a child that
# changes every metric with a one-page cache, so pages reach the file, and exits uncommitted);
# prints whether the journal it leaves exists
HOT_JOURNAL = """
import os, sqlite3
if os.fork() == 0:
    db = sqlite3.connect("/data/mlflow.db", isolation_level=None)
    db.execute("PRAGMA cache_size = 1")
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE metrics SET value = value + 1")
    os._exit(0)
os.wait()
print(os.path.exists("/data/mlflow.db-journal"))
"""


def mlflow_container(docker_client, stack):
    """The project's mlflow container."""
    label = [f"com.docker.compose.project={stack.project}", "com.docker.compose.service=mlflow"]
    (container,) = docker_client.containers.list(all=True, filters={"label": label})
    return container


@pytest.fixture(scope="module")
def finished_runs(stack) -> dict[str, tuple]:
    """Two finished training runs, as snapshot_of_runs records them."""
    for name in ("safety-a", "safety-b"):
        result = stack.compose(
            "run", "--rm", "bash", "python", "train.py", "--n-estimators", "20", "--run-name", name
        )
        assert result.returncode == 0, result.stderr
    runs = snapshot_of_runs(stack)
    assert len(runs) == 2
    return runs


def test_eight_concurrent_jobs_record_eight_runs_without_lock_errors(stack):
    command = ["docker", "compose", "run", "--rm", "bash", "python", "train.py"]
    jobs = [
        subprocess.Popen(
            [*command, "--n-estimators", "20", "--run-name", f"concurrent-{i}"],
            cwd=stack.directory,
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    outputs = [job.communicate(timeout=600) for job in jobs]
    assert [job.returncode for job in jobs] == [0] * 8, outputs
    assert not any("database is locked" in out + err for out, err in outputs)
    runs = search_runs(stack, "attributes.run_name LIKE 'concurrent-%'")
    assert sorted(run["info"]["run_name"] for run in runs) == [f"concurrent-{i}" for i in range(8)]
    for run in runs:
        assert run["info"]["status"] == "FINISHED"
        assert {"accuracy", "f1_macro", "train_accuracy", "curve_accuracy"} <= {
            m["key"] for m in run["data"]["metrics"]
        }
        assert len(metric_history(stack, run["info"]["run_id"], "curve_accuracy")) == 10
    logs = stack.compose("logs", "--no-color", "mlflow").stdout
    assert "database is locked" not in logs


def test_killing_the_server_mid_run_loses_no_finished_run(docker_client, stack, finished_runs):
    job = subprocess.Popen(
        # Synchronous logging: the job fails at the first request after the kill (asynchronous,
        # it would fit its 3,000 trees first, then fail the same way)
        ["docker", "compose", "run", "--rm", "--env", "MLFLOW_ENABLE_ASYNC_LOGGING=false", "bash"]
        + ["python", "train.py", "--n-estimators", "3000", "--curve-steps", "3000"]
        + ["--run-name", "killed-mid-run"],
        cwd=stack.directory,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait until the job is really logging, then pull the plug
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            runs = search_runs(stack, "attributes.run_name = 'killed-mid-run'")
            if (
                runs
                and len(metric_history(stack, runs[0]["info"]["run_id"], "curve_accuracy")) > 20
            ):
                break
            assert job.poll() is None, job.communicate()
            time.sleep(0.5)
        else:
            pytest.fail("the job never started logging")
        mlflow_container(docker_client, stack).kill(signal="SIGKILL")
        out, err = job.communicate(timeout=180)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 1, out + err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "stopped answering" in errors[0], err
    assert "Traceback" not in err

    # The kill lands in the middle of a write only sometimes; here always: a process of the
    # store's user begins a write transaction that reaches the database file and dies in it,
    # leaving a hot journal that only a writer can roll back
    cut_off = stack.compose(
        "run", "--rm", "--no-deps", "--entrypoint", "python", "mlflow", "-c", HOT_JOURNAL
    )  # fmt: skip
    assert cut_off.stdout.split()[-1:] == ["True"], cut_off.stdout + cut_off.stderr
    stack.up()
    assert integrity_check(stack) == "ok"
    assert snapshot_of_runs(stack) == finished_runs


def test_a_crashed_server_process_is_restarted_with_its_data(docker_client, stack, finished_runs):
    container = mlflow_container(docker_client, stack)
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    restarts = container.attrs["RestartCount"]
    # tini (PID 1) exits with the server, and Docker, seeing a crash, restarts the container
    server = container.exec_run(["cat", "/proc/1/task/1/children"]).output.decode().split()[0]
    killed = container.exec_run(["python", "-c", f"import os; os.kill({server}, 9)"])
    assert killed.exit_code == 0, killed.output
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        container.reload()
        health = container.attrs["State"].get("Health", {}).get("Status")
        if container.attrs["RestartCount"] > restarts and health == "healthy":
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"not restarted and healthy: {container.attrs['State']}")
    stack.up()  # the port Docker picked may differ after the restart
    assert snapshot_of_runs(stack) == finished_runs


@pytest.mark.daemon_restart
@pytest.mark.skipif(
    os.environ.get("MLSTACK_TEST_DAEMON_RESTART") != "1",
    reason="restarts the Docker daemon, stopping every container on it: set "
    "MLSTACK_TEST_DAEMON_RESTART=1 on a machine of its own (CI does)",
)
def test_restarting_the_docker_daemon_brings_the_stack_back(docker_client, stack, finished_runs):
    restart_docker_daemon()
    wait_until_healthy(stack.project, {"mlflow", "jupyter"})
    stack.up()
    assert snapshot_of_runs(stack) == finished_runs


def test_backup_then_destroy_then_restore_gives_back_the_same_runs(
    docker_client, stack, finished_runs
):
    before = snapshot_of_runs(stack)
    result = stack.make("backup")
    assert result.returncode == 0, result.stderr
    archives = sorted((stack.directory / "backups").glob("mlflow-*.tar.gz"))
    assert archives and archives[-1].stat().st_uid == stack.uid
    volume = f"{stack.project}_mlflow-data"

    # Without a terminal or CONFIRM=1, destroy refuses and deletes nothing
    refused = stack.make("destroy")
    assert refused.returncode != 0 and "CONFIRM=1" in refused.stderr
    assert docker_client.volumes.get(volume)

    destroyed = stack.make("destroy", "CONFIRM=1")
    assert destroyed.returncode == 0, destroyed.stderr
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(volume)
    # destroy made a backup of its own first
    assert len(list((stack.directory / "backups").glob("mlflow-*.tar.gz"))) == len(archives) + 1

    urls = stack.urls
    restored = stack.make("restore", f"FILE=backups/{archives[-1].name}")
    assert restored.returncode == 0, restored.stderr
    stack.up()
    assert snapshot_of_runs(stack) == before
    assert integrity_check(stack) == "ok"
    # The URLs printed before destroy and restore still hold (ports remembered in .env)
    assert stack.urls == urls


# A user's job that logs one small run after another, printing each run's id once it finished
LOGGING_LOOP = """
import mlflow
while True:
    with mlflow.start_run(run_name="loop") as run:
        mlflow.log_metric("x", 1.0)
    print(run.info.run_id, flush=True)
"""


def test_destroy_stops_every_writer_before_its_backup_and_refuses_a_damaged_store(
    docker_client, stack
):
    job = subprocess.Popen(
        ["docker", "compose", "run", "--rm", "-T", "bash", "python", "-c", LOGGING_LOOP],
        cwd=stack.directory, env=stack.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Its run ids, among MLflow's own "View run" lines
        finished = []
        while len(finished) < 3:
            line = job.stdout.readline()
            assert line, "the job ended"
            if re.fullmatch(r"[0-9a-f]{32}", line.strip()):
                finished.append(line.strip())
        destroyed = stack.make("destroy", "CONFIRM=1")
        assert destroyed.returncode == 0, destroyed.stderr
    finally:
        job.kill()
        job.wait(timeout=60)
    # Every run the job finished before destroy began is in destroy's own backup
    archive = sorted((stack.directory / "backups").glob("mlflow-*.tar.gz"))[-1]
    restored = stack.make("restore", f"FILE=backups/{archive.name}")
    assert restored.returncode == 0, restored.stderr
    stack.up()
    for run_id in finished:
        assert stack.rest("runs/get", run_id=run_id)["run"]["info"]["status"] == "FINISHED"
    # A store whose backend store is gone (moved aside here): destroy refuses, deletes nothing
    volume = f"{stack.project}_mlflow-data"

    def in_volume(*command: str) -> None:
        docker_client.containers.run(
            image_ref("mlflow"), list(command), volumes={volume: {"bind": "/data"}}, user="0",
            remove=True,
        )  # fmt: skip

    stack.compose("stop", "mlflow")
    in_volume("mv", "/data/mlflow.db", "/data/mlflow.db.aside")
    try:
        refused = stack.make("destroy", "CONFIRM=1")
        assert refused.returncode != 0 and "no backend store (mlflow.db)" in refused.stderr
        assert docker_client.volumes.get(volume)
    finally:
        in_volume("mv", "/data/mlflow.db.aside", "/data/mlflow.db")
    stack.up()
    for run_id in finished:
        assert stack.rest("runs/get", run_id=run_id)["run"]["info"]["status"] == "FINISHED"


# Restores one archive over the store again and again, each time killed (os._exit, as a SIGKILL
# would) at its Nth step, N = 1, 2, ... until one runs to its end; after each, the
# server's own start-up step (store.py prepare) runs, and the store must be whole: either the old
# one or the archive's, never a mix or nothing. Prints one JSON line per attempt
KILLED_RESTORES = """
import json, os, sqlite3, sys
from pathlib import Path
sys.path.insert(0, "/usr/local/lib/mlstack")
import store

def runs():
    db = sqlite3.connect("file:/data/mlflow.db?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0], db.execute(
            "SELECT count(*) FROM runs").fetchone()[0]
    finally:
        db.close()

rename = Path.rename
for kill_at in range(1, 50):
    child = os.fork()
    if child == 0:
        steps = 0
        def killing(step):
            def wrapped(*args):
                global steps
                steps += 1
                if steps == kill_at:
                    os._exit(9)
                return step(*args)
            return wrapped
        # The steps: marking the unpacked archive ready (store.durable), then each rename
        Path.rename = killing(rename)
        store.durable = killing(store.durable)
        store.restore(Path(sys.argv[1]))
        os._exit(0)
    _, status = os.waitpid(child, 0)
    finished = os.waitstatus_to_exitcode(status) == 0
    store.main(["prepare"])
    integrity, count = runs()
    artifacts = Path("/data/artifacts").is_dir()
    leftovers = sorted(p.name for p in Path("/data").iterdir() if p.name.startswith(".restore"))
    print(json.dumps({"kill_at": kill_at, "finished": finished, "integrity": integrity,
                      "runs": count, "artifacts": artifacts, "leftovers": leftovers}), flush=True)
    if finished:
        break
"""


def test_a_restore_killed_at_any_step_leaves_one_whole_store(stack, finished_runs):
    assert stack.make("backup").returncode == 0
    archive = sorted((stack.directory / "backups").glob("mlflow-*.tar.gz"))[-1]
    # One run more than the archive holds: the old store and the archive's tell apart
    extra = stack.compose(
        "run", "--rm", "bash", "python", "train.py", "--n-estimators", "5", "--curve-steps", "2"
    )
    assert extra.returncode == 0, extra.stderr[-2000:]
    assert stack.compose("stop", "mlflow").returncode == 0
    result = stack.compose(
        "run", "--rm", "--no-deps", "--volume", f"{archive}:/restore/{archive.name}:ro",
        "mlflow", "python", "-c", KILLED_RESTORES, f"/restore/{archive.name}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    attempts = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(attempts) >= 5 and attempts[-1]["finished"], attempts
    old, new = attempts[0]["runs"], attempts[-1]["runs"]
    assert old == new + 1, attempts
    for attempt in attempts:
        assert attempt["integrity"] == "ok" and attempt["artifacts"], attempt
        assert attempt["runs"] in (old, new) and attempt["leftovers"] == [], attempt
    # The server starts on what the last one left: the archive's runs
    stack.up()
    assert snapshot_of_runs(stack) == finished_runs


def test_restore_of_a_damaged_archive_changes_nothing(stack, finished_runs):
    broken = stack.directory / "backups" / "broken.tar.gz"
    broken.parent.mkdir(exist_ok=True)
    broken.write_bytes(b"not a backup")
    result = stack.make("restore", "FILE=backups/broken.tar.gz")
    assert result.returncode != 0
    # The error names the user's file, not the path it had in the container
    assert "broken.tar.gz is not a readable backup archive" in result.stderr
    stack.up()
    assert snapshot_of_runs(stack) == finished_runs


def test_restore_of_an_archive_docker_cannot_mount_says_rename_it(stack, finished_runs):
    odd = stack.directory / "backups" / "mlflow:copy.tar.gz"
    odd.parent.mkdir(exist_ok=True)
    odd.write_bytes(b"whatever")
    result = stack.make("restore", f"FILE=backups/{odd.name}")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "rename it" in errors[0], result.stderr
    # Refused before anything ran: the archive is still there and the runs are as they were
    assert odd.exists()
    assert snapshot_of_runs(stack) == finished_runs
    odd.unlink()


def test_down_and_clean_keep_the_mlflow_volume(docker_client, stack, finished_runs):
    for target in ("down", "clean"):
        result = stack.make(target)
        assert result.returncode == 0, result.stderr
        assert docker_client.volumes.get(f"{stack.project}_mlflow-data")
    stack.up()
    assert snapshot_of_runs(stack) == finished_runs


@pytest.fixture
def mlflow_on_volume(docker_client, built_images):
    """Start the mlflow image on a volume of its own, as compose would (same restart policy).

    Yields:
        ``(volume, start)`` where ``start() -> Container``; both are removed afterwards.
    """
    volume = docker_client.volumes.create()
    containers = []

    def start():
        container = docker_client.containers.run(
            built_images["mlflow"],
            detach=True,
            volumes={volume.name: {"bind": "/data", "mode": "rw"}},
            ports={"5000/tcp": ("127.0.0.1", None)},
            restart_policy={"Name": "unless-stopped"},
        )
        containers.append(container)
        return container

    yield volume, start
    for container in containers:
        with contextlib.suppress(docker.errors.NotFound):  # a test may remove its own
            container.remove(force=True)
    volume.remove(force=True)


# A store that an older MLflow (mlflow-skinny 2.17.2, SQLAlchemy < 2.1) wrote: one run,
# "old-run" in the experiment "from-the-past", with alpha=0.5 and rmse=0.25. Shipped with the
# tests so that no test downloads an old MLflow
OLD_STORE = Path(__file__).parent / "data" / "mlflow-2.17.2-store.db.gz"


def test_a_store_from_an_older_mlflow_is_backed_up_then_migrated(docker_client, mlflow_on_volume):
    volume, start = mlflow_on_volume
    store = gzip.decompress(OLD_STORE.read_bytes())
    with tempfile.NamedTemporaryFile(suffix=".db") as copy:
        copy.write(store)
        copy.flush()
        with contextlib.closing(sqlite3.connect(copy.name)) as db:
            run_id = db.execute("SELECT run_uuid FROM runs WHERE name = 'old-run'").fetchone()[0]
    # Into the new volume as the image's user (whose /data gives the volume its owner)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        entry = tarfile.TarInfo("mlflow.db")
        entry.size, entry.uid, entry.gid, entry.mode = len(store), 1000, 1000, 0o644
        tar.addfile(entry, io.BytesIO(store))
    # Started, so that the new volume first takes the image's /data (its owner) as compose's
    holder = docker_client.containers.run(
        image_ref("mlflow"),
        ["sleep", "300"],
        detach=True,
        volumes={volume.name: {"bind": "/data", "mode": "rw"}},
    )
    try:
        assert holder.put_archive("/data", archive.getvalue())
    finally:
        holder.remove(force=True)

    container = start()
    url = wait_for_health(container)
    run = requests.get(
        f"{url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30
    ).json()["run"]
    assert run["data"]["params"] == [{"key": "alpha", "value": "0.5"}]
    assert run["data"]["metrics"][0]["value"] == 0.25
    logs = container.logs().decode()
    assert "upgrading to" in logs
    listing = container.exec_run(["ls", "/data/backups"]).output.decode().split()
    assert len(listing) == 1 and listing[0].startswith("mlflow-")


def test_a_store_from_a_newer_mlflow_stops_with_a_clear_message_not_a_loop(
    docker_client, mlflow_on_volume
):
    volume, start = mlflow_on_volume
    container = start()
    wait_for_health(container)
    container.remove(force=True)
    # As if a newer MLflow had migrated the store to a revision this one does not know
    docker_client.containers.run(
        image_ref("mlflow"),
        [
            "python",
            "-c",
            "import sqlite3; db = sqlite3.connect('/data/mlflow.db'); "
            "db.execute(\"UPDATE alembic_version SET version_num = 'ffffffffffff'\"); db.commit()",
        ],
        volumes={volume.name: {"bind": "/data", "mode": "rw"}},
        remove=True,
    )
    container = start()
    deadline = time.monotonic() + 60
    while "does not know" not in container.logs().decode():
        assert time.monotonic() < deadline, container.logs().decode()
        time.sleep(0.5)
    time.sleep(5)  # long enough for a restart loop to show
    container.reload()
    assert container.status == "running" and container.attrs["RestartCount"] == 0
    errors = [line for line in container.logs().decode().splitlines() if "error:" in line]
    assert "a newer MLflow migrated it" in errors[0]
    version = container.exec_run(
        [
            "python",
            "-c",
            "import sqlite3; print(sqlite3.connect('/data/mlflow.db')"
            ".execute('SELECT version_num FROM alembic_version').fetchone()[0])",
        ]
    )
    assert version.output.decode().strip() == "ffffffffffff"


def wait_for_health(container, deadline_seconds: float = 120) -> str:
    """Wait until a standalone mlflow container answers /health.

    Returns:
        Its URL on the host (``http://127.0.0.1:<port>``).

    Raises:
        AssertionError: with the container's logs, when it does not answer in time.
    """
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"].get("5000/tcp")
        if bindings:
            url = f"http://127.0.0.1:{bindings[0]['HostPort']}"
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    return url
            except requests.RequestException:
                pass
        time.sleep(0.5)
    raise AssertionError(container.logs().decode()[-3000:])
