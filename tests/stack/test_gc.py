"""`make gc`: after a backup that still holds them, MLflow's garbage collection frees the disk of
runs deleted in the MLflow UI, and says how much it freed."""

from __future__ import annotations

import re
import tarfile

import pytest
import requests

pytestmark = pytest.mark.stack


def test_make_gc_frees_a_deleted_runs_artifacts_after_a_backup_that_holds_them(
    stack, docker_client
):
    trained = stack.compose(
        "run", "--rm", "bash", "python", "train.py", "--n-estimators", "5", "--run-name", "gc"
    )
    assert trained.returncode == 0, trained.stderr
    run_id = re.search(r"^run ([0-9a-f]{32}) logged", trained.stdout, re.M)[1]
    run = requests.get(
        f"{stack.urls['mlflow']}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30
    ).json()["run"]
    # The proxied artifact root on the volume: mlflow-artifacts:/<experiment>/<run>/artifacts
    folder = "/data/artifacts/" + run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
    mlflow_container = docker_client.containers.list(
        filters={
            "label": [
                f"com.docker.compose.project={stack.project}",
                "com.docker.compose.service=mlflow",
            ]
        }
    )[0]
    assert (
        mlflow_container.exec_run(["test", "-f", f"{folder}/plots/confusion_matrix.png"]).exit_code
        == 0
    )
    deleted = requests.post(
        f"{stack.urls['mlflow']}/api/2.0/mlflow/runs/delete", json={"run_id": run_id}, timeout=30
    )
    assert deleted.status_code == 200, deleted.text
    backups = set((stack.directory / "backups").glob("mlflow-*.tar.gz"))

    result = stack.make("gc")
    assert result.returncode == 0, result.stdout + result.stderr
    freed = re.search(r"^gc: freed (\d+) bytes", result.stdout, re.M)
    assert freed and int(freed[1]) > 0, result.stdout
    # Gone from the volume, which the server still has (a stopped container would fail too)
    probe = mlflow_container.exec_run(
        ["sh", "-c", f"test -d /data/artifacts && ! test -e {folder}"]
    )
    assert probe.exit_code == 0, probe.output
    gone = requests.get(
        f"{stack.urls['mlflow']}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30
    )
    assert gone.status_code == 404, gone.text
    # The backup taken first still holds the run's artifacts
    (archive,) = set((stack.directory / "backups").glob("mlflow-*.tar.gz")) - backups
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert any(run_id in name and name.endswith("confusion_matrix.png") for name in names)
