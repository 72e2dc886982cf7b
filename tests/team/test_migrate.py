"""`make migrate-store` and the team store's backup/restore, end to end on a private project: a
SQLite store (the default stack) with runs, metric histories, params, tags, a dataset input, an
artifact and a registered model is moved into a new team store, then compared through the REST
API; the team store is backed up, changed and restored. One project serves every test here, in
file order (the ``team`` pytest-xdist group); it is removed with its volumes and images."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import tarfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.helpers import private_copy, project_resources
from tests.team.helpers import TEAM_COMPOSE_FILE, TeamStack

# One unit for pytest-xdist, apart from the team stack's group: the module's own stack is set
# up once, and the unit can run on whichever worker is free
pytestmark = pytest.mark.xdist_group("migrate")

# A run with a metric history of several steps, a param, a tag and an artifact (in the runner)
HISTORY_RUN = """
import mlflow
mlflow.set_experiment("history")
with mlflow.start_run(run_name="steps"):
    for step in range(5):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_param("depth", "3")
    mlflow.set_tag("stage", "migration")
    mlflow.log_text("notes of the run", "notes/hello.txt")
"""
# The registered model from the team server: it loads and predicts on its input example
PREDICT = """
import mlflow
from mlflow.models import Model
path = mlflow.artifacts.download_artifacts("models:/wine/1")
example = Model.load(path).load_input_example(path)
predictions = mlflow.pyfunc.load_model("models:/wine/1").predict(example)
print("predictions", len(predictions))
"""
COUNT_LINE = re.compile(r"^([a-z ]+?)\s+(\d+)\s+(\d+)$", re.MULTILINE)


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that start with ``error:``."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@contextmanager
def logged_in(credentials: tuple[str, str] | None):
    """MLflow client's basic-auth environment set to ``credentials`` (None: no auth) meanwhile."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    if credentials:
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = credentials
    else:
        for key in saved:
            os.environ.pop(key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def store_contents(url: str, credentials: tuple[str, str] | None, scratch: Path) -> dict:
    """What the tracking server at ``url`` returns over its REST API: experiments, each run with
    params, tags, inputs, every metric's full history and its artifacts' bytes, registered
    model versions and logged models."""
    with logged_in(credentials):
        client = MlflowClient(url)
        experiments = client.search_experiments()
        contents = {"experiments": sorted((e.experiment_id, e.name) for e in experiments)}
        runs = client.search_runs([e.experiment_id for e in experiments])
        contents["runs"] = {}
        for run in runs:
            run_id = run.info.run_id
            histories = {
                key: sorted(
                    (m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)
                )
                for key in run.data.metrics
            }
            target = scratch / run_id
            local = Path(
                client.download_artifacts(run_id, "", str(target.mkdir(parents=True) or target))
            )
            artifacts = {
                p.relative_to(local).as_posix(): p.read_bytes()
                for p in local.rglob("*")
                if p.is_file()
            }
            contents["runs"][run_id] = {
                "info": (run.info.experiment_id, run.info.run_name, run.info.status,
                         run.info.start_time, run.info.end_time, run.info.artifact_uri),
                "params": run.data.params,
                "tags": {k: v for k, v in run.data.tags.items()},
                "metrics": histories,
                "inputs": sorted((d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs),
                "artifacts": artifacts,
            }  # fmt: skip
        contents["model versions"] = sorted(
            (v.name, v.version, v.source, v.run_id) for v in client.search_model_versions()
        )
        contents["logged models"] = sorted(
            (m.model_id, m.name, m.artifact_location)
            for m in client.search_logged_models([e.experiment_id for e in experiments])
        )
    return contents


def host_url(stack: TeamStack) -> str:
    """The tracking server's host URL (its published loopback port)."""
    result = stack.compose("port", "mlflow", "5000")
    assert result.returncode == 0, result.stderr
    return f"http://{result.stdout.strip()}"


# Session scope: pytest tears a module's fixtures down whenever the worker runs a test of another
# module in between (the team group shares the worker), which set this stack up twice
@pytest.fixture(scope="session")
def project(tmp_path_factory, test_uid, docker_client, built_images):
    """A private project with a SQLite store holding a trained, registered model and a run with
    metric histories; its default-mode contents are in ``project.before``. Torn down with its
    volumes and images."""
    directory, env = private_copy(
        tmp_path_factory.mktemp("migrate"), "migrate", test_uid, MLSTACK_UP_TIMEOUT="600"
    )
    stack = TeamStack(directory=directory, env=env)
    try:
        built = stack.make("build")
        assert built.returncode == 0, built.stderr[-3000:]
        # Healthy before the jobs: the runner waits less than a start on a loaded machine takes
        up = stack.compose("up", "--detach", "--wait", "mlflow")
        assert up.returncode == 0, up.stderr[-3000:]
        trained = stack.compose(
            "run", "--rm", "bash", "python", "train.py", "--register-model", "wine"
        )
        assert trained.returncode == 0, trained.stderr[-3000:]
        logged = stack.compose("run", "--rm", "bash", "python", "-c", HISTORY_RUN)
        assert logged.returncode == 0, logged.stderr[-3000:]
        stack.before = store_contents(host_url(stack), None, directory.parent / "sqlite")
        yield stack
    finally:
        if (directory / ".env").exists():
            name = stack.name
            # .env is in team mode by then (make migrate-store TEAM=1 recorded it): down takes
            # the team services and every volume, the SQLite store's included
            stack.down()
            left = project_resources(docker_client, name)
            assert not left, f"teardown left {left}"


@pytest.fixture(scope="session")
def migrated(project):
    """The project after `make migrate-store TEAM=1`, its team server up; the command's result
    in ``migrated.result``, and compose calls in team mode from here on."""
    sqlite_url = host_url(project)
    project.result = project.make("migrate-store", "TEAM=1")
    assert f"COMPOSE_FILE={TEAM_COMPOSE_FILE}" in (project.directory / ".env").read_text()
    up = project.compose("up", "--detach", "--wait", "mlflow")
    assert up.returncode == 0, up.stderr[-3000:]
    project.mlflow_url = host_url(project)
    # The team server answers on the URL the SQLite one had (the port is kept in .env)
    assert project.mlflow_url == sqlite_url
    return project


def team_contents(stack: TeamStack, scratch: str) -> dict:
    """store_contents of the team server, logged in as the admin."""
    return store_contents(stack.mlflow_url, stack.credentials, stack.directory.parent / scratch)


def test_migration_prints_matching_counts_before_and_after(migrated):
    result = migrated.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    counts = {label: (int(a), int(b)) for label, a, b in COUNT_LINE.findall(result.stdout)}
    assert counts["runs"][0] >= 2 and counts["metric rows"][0] >= 5, result.stdout
    assert counts["registered models"][0] == 1 and counts["artifact files"][0] > 0, result.stdout
    assert all(before == after for before, after in counts.values()), result.stdout


def test_the_team_server_returns_what_the_sqlite_store_held(migrated):
    assert team_contents(migrated, "team") == migrated.before


def test_the_registered_model_loads_and_predicts_from_the_team_store(migrated):
    result = migrated.compose("run", "--rm", "bash", "python", "-c", PREDICT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^predictions [1-9]", result.stdout, re.MULTILINE), result.stdout


def test_migrating_into_a_non_empty_team_store_is_refused(migrated, docker_client):
    runs = migrated.psql("SELECT count(*) FROM runs")
    result = migrated.make("migrate-store", "TEAM=1")
    assert result.returncode != 0
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "not empty" in errors[0], result.stderr[-2000:]
    assert migrated.psql("SELECT count(*) FROM runs") == runs
    # The server was stopped for the attempt and started again, on the same URL, printed
    assert host_url(migrated) == migrated.mlflow_url
    assert f"MLflow:  {migrated.mlflow_url}" in result.stdout, result.stdout
    # The advice names the command that empties only the team store
    assert "make destroy" in errors[0] and "SQLite store stays" in errors[0], errors[0]
    # The SQLite store is still there, untouched by either migration
    assert docker_client.volumes.get(f"{migrated.name}_mlflow-data")


def test_team_backup_then_restore_drops_later_runs_and_keeps_earlier_ones(migrated):
    before = team_contents(migrated, "before-backup")
    backup = migrated.make("backup")
    assert backup.returncode == 0, backup.stderr[-3000:]
    archives = sorted((migrated.directory / "backups").glob("mlflow-team-*.tar.gz"))
    assert archives and archives[-1].stat().st_uid == int(migrated.env["MLSTACK_UID"])
    with logged_in(migrated.credentials):
        client = MlflowClient(migrated.mlflow_url)
        later = client.create_run(client.get_experiment_by_name("history").experiment_id)
        client.set_terminated(later.info.run_id)

    restored = migrated.make("restore", f"FILE=backups/{archives[-1].name}")
    assert restored.returncode == 0, restored.stderr[-3000:]
    # The server was stopped and started again, on the same URL, printed
    assert host_url(migrated) == migrated.mlflow_url
    assert f"MLflow:  {migrated.mlflow_url}" in restored.stdout, restored.stdout
    with logged_in(migrated.credentials):
        with pytest.raises(MlflowException):
            MlflowClient(migrated.mlflow_url).get_run(later.info.run_id)
    assert team_contents(migrated, "after-restore") == before


def test_a_team_restore_interrupted_at_each_step_leaves_a_store_the_server_starts_on(migrated):
    assert migrated.make("backup").returncode == 0
    archive = sorted((migrated.directory / "backups").glob("mlflow-team-*.tar.gz"))[-1]
    archived = team_contents(migrated, "archived")
    with logged_in(migrated.credentials):
        client = MlflowClient(migrated.mlflow_url)
        later = client.create_run(client.get_experiment_by_name("history").experiment_id)
        client.log_metric(later.info.run_id, "later", 1.0)
        client.set_terminated(later.info.run_id)
    current = team_contents(migrated, "current")
    assert current != archived
    # Killed (the whole make process group, as Ctrl-C or a lost terminal would) once the
    # archive's artifacts were uploaded and the backend store's database restored beside the
    # one in use, then right after both databases were swapped in: the server starts on the old
    # store, then on the archive's
    for marker, expected in (
        ("database mlflow restored beside", current),
        ("databases swapped in", archived),
    ):
        restore = subprocess.Popen(
            ["make", "--no-print-directory", "restore", f"FILE=backups/{archive.name}"],
            cwd=migrated.directory, env=migrated.env, text=True, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        seen = []
        for line in restore.stdout:
            seen.append(line)
            if marker in line:
                os.killpg(restore.pid, signal.SIGKILL)
                break
        restore.wait(timeout=120)
        assert any(marker in line for line in seen), "".join(seen)[-3000:]
        # Containers of the killed `docker compose run` may be left: make up starts the server
        leftovers = migrated.compose("ps", "--all", "--quiet", "--filter", "status=exited")
        for container in leftovers.stdout.split():
            subprocess.run(["docker", "rm", "--force", container], capture_output=True)
        up = migrated.make("up")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert host_url(migrated) == migrated.mlflow_url
        assert team_contents(migrated, f"after-{len(seen)}") == expected


def test_a_damaged_team_archive_is_refused_and_changes_nothing(migrated):
    runs = migrated.psql("SELECT run_uuid FROM runs ORDER BY run_uuid")
    # A good archive of its own, cut short below
    assert migrated.make("backup").returncode == 0
    archives = sorted((migrated.directory / "backups").glob("mlflow-team-*.tar.gz"))
    broken = migrated.directory / "backups" / "broken.tar.gz"
    broken.write_bytes(archives[-1].read_bytes()[:2000])
    count = len(archives)
    result = migrated.make("restore", "FILE=backups/broken.tar.gz")
    assert result.returncode != 0
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "broken.tar.gz" in errors[0], result.stderr[-2000:]
    assert migrated.psql("SELECT run_uuid FROM runs ORDER BY run_uuid") == runs
    # Refused before its own backup: nothing was written either
    assert len(list((migrated.directory / "backups").glob("mlflow-team-*.tar.gz"))) == count


# A pg_dump archive that lists fine but fails to restore: a table owned by a role that no
# longer exists (made, dumped and dropped in the team's PostgreSQL)
HAUNTED_DUMP = """
set -e
psql -q -v ON_ERROR_STOP=1 -c "CREATE ROLE ghost" -c "CREATE DATABASE ghostdb" >&2
psql -q -v ON_ERROR_STOP=1 -d ghostdb -c "CREATE TABLE haunted (x int)" \
  -c "ALTER TABLE haunted OWNER TO ghost" >&2
pg_dump --format=custom --dbname=ghostdb
psql -q -c "DROP DATABASE ghostdb" -c "DROP ROLE ghost" >&2
"""


def test_a_team_restore_whose_second_database_fails_keeps_the_old_store_and_the_server_up(
    migrated,
):
    assert migrated.make("backup").returncode == 0
    archive = sorted((migrated.directory / "backups").glob("mlflow-team-*.tar.gz"))[-1]
    with logged_in(migrated.credentials):
        client = MlflowClient(migrated.mlflow_url)
        later = client.create_run(client.get_experiment_by_name("history").experiment_id)
        client.set_terminated(later.info.run_id)
    current = team_contents(migrated, "before-haunted")
    dumped = subprocess.run(
        ["docker", "compose", "exec", "-T", "postgres", "sh", "-c", HAUNTED_DUMP],
        cwd=migrated.directory, env=migrated.env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert dumped.returncode == 0 and dumped.stdout, dumped.stderr[-2000:]
    # The good archive with its user store's dump (restored second) swapped for that one
    haunted = migrated.directory / "backups" / "haunted.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(haunted, "w:gz") as target:
        for member in source.getmembers():
            if member.name == "mlflow_auth.dump":
                member.size = len(dumped.stdout)
                target.addfile(member, io.BytesIO(dumped.stdout))
            else:
                target.addfile(member, source.extractfile(member) if member.isfile() else None)
    os.chown(haunted, int(migrated.env["MLSTACK_UID"]), int(migrated.env["MLSTACK_GID"]))

    result = migrated.make("restore", "FILE=backups/haunted.tar.gz")
    assert result.returncode != 0
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr[-3000:]
    assert "pg_restore of mlflow_auth" in errors[0] and "as it was" in errors[0], errors
    # The first database had been restored beside the one in use; neither replaced anything
    assert "database mlflow restored beside" in result.stdout, result.stdout[-3000:]
    assert host_url(migrated) == migrated.mlflow_url
    assert team_contents(migrated, "after-haunted") == current
    databases = {row[0] for row in migrated.psql("SELECT datname FROM pg_database", "postgres")}
    assert not {name for name in databases if name.endswith(("_incoming", "_previous"))}
    haunted.unlink()


# Where the injected artifact lands in the SQLite store: a key longer than S3's 1024 bytes,
# which the object store refuses (KeyTooLongError), sorted after the runs' own artifacts
LONG_KEY = "zz-refused/" + "/".join(["d" * 200] * 6) + "/weights.bin"
# Bucket listing in the mlflow container (the only one with the S3 keys): the keys, one per line
LIST_KEYS = """
import boto3, os
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow"):
    for item in page.get("Contents", []):
        print(item["Key"])
"""


def sqlite_volume(migrated, *command: str) -> subprocess.CompletedProcess:
    """``command`` in a throwaway container of the mlflow image on the SQLite store's volume."""
    return subprocess.run(
        ["docker", "run", "--rm", "--volume", f"{migrated.name}_mlflow-data:/data",
         "--entrypoint", command[0], migrated.container("mlflow").image.id, *command[1:]],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_refusals_advice_followed_keeps_the_sqlite_store_and_migrates_again(
    migrated, docker_client
):
    # What the refusal says: make destroy in team mode, then make migrate-store again
    destroyed = migrated.make("destroy", "CONFIRM=1")
    assert destroyed.returncode == 0, destroyed.stderr[-3000:]
    name = migrated.name
    said = [line for line in destroyed.stdout.splitlines() if line.startswith("destroy: deleted")]
    assert said == [
        f"destroy: deleted volume {name}_postgres-data",
        f"destroy: deleted volume {name}_s3-data",
    ], destroyed.stdout
    # The SQLite store's volume is still there, and so is the team store's backup
    assert docker_client.volumes.get(f"{name}_mlflow-data")
    assert list((migrated.directory / "backups").glob("mlflow-team-*.tar.gz"))

    # The object store refuses one artifact half-way through: nothing is migrated, the team
    # store is left empty (bucket and tables), the SQLite store as it was, the server up again
    up = migrated.compose("up", "--detach", "--wait", "mlflow")
    assert up.returncode == 0, up.stderr[-3000:]
    injected = sqlite_volume(
        migrated, "sh", "-ec",
        f'mkdir -p "$(dirname /data/artifacts/{LONG_KEY})"; '
        f'head -c 4096 /dev/urandom > /data/artifacts/{LONG_KEY}; sha256sum /data/mlflow.db',
    )  # fmt: skip
    assert injected.returncode == 0, injected.stderr
    refused = migrated.make("migrate-store")
    assert refused.returncode != 0
    errors = error_lines(refused.stderr)
    assert len(errors) == 1, refused.stderr[-3000:]
    assert "KeyTooLong" in errors[0] and "nothing was migrated" in errors[0], errors
    assert "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert migrated.psql("SELECT count(*) FROM runs") == [["0"]]
    keys = migrated.compose("exec", "-T", "mlflow", "python", "-c", LIST_KEYS)
    assert keys.returncode == 0 and keys.stdout.split() == [], keys.stdout + keys.stderr
    assert host_url(migrated) == migrated.mlflow_url
    assert requests.get(f"{migrated.mlflow_url}/health", timeout=10).text.strip() == "OK"
    removed = sqlite_volume(
        migrated, "sh", "-ec", "rm -r /data/artifacts/zz-refused; sha256sum /data/mlflow.db"
    )
    assert removed.returncode == 0 and removed.stdout == injected.stdout, removed.stderr

    again = migrated.make("migrate-store")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    counts = {label: (int(a), int(b)) for label, a, b in COUNT_LINE.findall(again.stdout)}
    assert counts == {
        label: (int(a), int(b)) for label, a, b in COUNT_LINE.findall(migrated.result.stdout)
    }
    up = migrated.compose("up", "--detach", "--wait", "mlflow")
    assert up.returncode == 0, up.stderr[-3000:]
    assert host_url(migrated) == migrated.mlflow_url
    assert team_contents(migrated, "migrated-again") == migrated.before
