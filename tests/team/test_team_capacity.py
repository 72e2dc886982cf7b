"""The team's artifact store holds what its disk holds: multi-GB artifacts from a host client
with MLflow's defaults upload and download intact, the tracking server stages them on disk (not
in memory), and `make gc` gives the space of deleted runs back and keeps a bounded number of
backups."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

from tests.team.helpers import TeamStack
from tests.team.test_team_users import outside_env

MB = 1024**2
# What the test sends: one 2 GB artifact, then four of 100 MB in another run. Random bytes: the
# object store compresses what compresses (512 MB of one byte takes 9 MB), which would prove
# nothing about its capacity
SIZES = {"big": [2048], "many": [100] * 4}
# The tracking server (two workers) uses ~0.7 GB; staged in memory, a 2 GB upload would add 2 GB
MEMORY_BOUND = 1536 * MB

CLIENT = r"""
import hashlib, json, os, sys
from pathlib import Path
from mlflow import MlflowClient

sizes, scratch = json.loads(sys.argv[1]), Path(sys.argv[2])
client = MlflowClient()
experiment = client.create_experiment("capacity")
answer = {}
for name, files in sizes.items():
    run = client.create_run(experiment, run_name=name).info.run_id
    sent = {}
    for index, megabytes in enumerate(files):
        path, digest = scratch / f"{name}-{index}.bin", hashlib.sha256()
        with open(path, "wb") as out:
            for _ in range(megabytes // 8):
                block = os.urandom(8 * 1024**2)
                out.write(block)
                digest.update(block)
        client.log_artifact(run, str(path), "weights")
        path.unlink()
        sent[path.name] = digest.hexdigest()
    client.set_terminated(run)
    back = {}
    for file in sent:
        local = Path(client.download_artifacts(run, f"weights/{file}", str(scratch)))
        digest = hashlib.sha256()
        with open(local, "rb") as handle:
            while chunk := handle.read(8 * 1024**2):
                digest.update(chunk)
        back[file] = digest.hexdigest()
        local.unlink()
    answer[name] = {"run": run, "sent": sent, "back": back}
print(json.dumps(answer))
"""


def memory_in_use(container_id: str) -> int:
    """Bytes the container's processes hold in memory, page cache left out (it is reclaimed
    under pressure) but tmpfs files counted: rss + shmem (cgroup v1) or anon + shmem (v2)."""
    for stat in (
        Path(f"/sys/fs/cgroup/memory/docker/{container_id}/memory.stat"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.stat"),
    ):
        if stat.exists():
            values = dict(line.split() for line in stat.read_text().splitlines())
            return sum(
                int(values.get(key, 0)) for key in ("total_rss", "anon", "total_shmem", "shmem")
            )
    raise AssertionError(f"no memory.stat of container {container_id} under /sys/fs/cgroup")


def object_store_bytes(stack: TeamStack) -> int:
    """Bytes under the object store's /data (du in its container)."""
    result = stack.compose("exec", "-T", "s3", "du", "-sb", "/data")
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[0])


def test_multi_gb_artifacts_round_trip_in_bounded_memory_and_gc_gives_the_space_back(
    team_stack: TeamStack, tmp_path
):
    mlflow_id = team_stack.container("mlflow").id
    used_before = object_store_bytes(team_stack)
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            peak[0] = max(peak[0], memory_in_use(mlflow_id))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = subprocess.run(
            [sys.executable, "-c", CLIENT, json.dumps(SIZES), str(tmp_path)],
            env=outside_env(team_stack), cwd=tmp_path, capture_output=True, text=True,
            timeout=1200,
        )  # fmt: skip
    finally:
        done.set()
        sampler.join()
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    for name, files in SIZES.items():
        assert len(answer[name]["sent"]) == len(files)
        assert answer[name]["back"] == answer[name]["sent"], name
    assert 0 < peak[0] < MEMORY_BOUND, f"the tracking server held {peak[0] / MB:.0f} MB"
    total = sum(sum(files) for files in SIZES.values()) * MB
    assert object_store_bytes(team_stack) - used_before > 0.95 * total

    for name in SIZES:
        deleted = subprocess.run(
            [sys.executable, "-c",
             f"from mlflow import MlflowClient; MlflowClient().delete_run({answer[name]['run']!r})"],
            env=outside_env(team_stack), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert deleted.returncode == 0, deleted.stderr[-2000:]
    env_file = team_stack.directory / ".env"
    settings = env_file.read_text()
    env_file.write_text(settings + "MLSTACK_BACKUPS_KEPT=1\n")
    try:
        first = team_stack.make("gc")
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        freed = re.search(r"^gc: freed (\d+) bytes .* in s3-data;", first.stdout, re.M)
        assert freed and int(freed[1]) > 0.95 * total, first.stdout[-2000:]
        assert object_store_bytes(team_stack) < used_before + 64 * MB
        # The second gc deletes the first one's backup (which held the 2.4 GB): one is kept
        second = team_stack.make("gc")
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
        assert "gc: deleted the old backup mlflow-team-" in second.stdout, second.stdout[-2000:]
        assert len(list((team_stack.directory / "backups").glob("mlflow-team-*.tar.gz"))) == 1
    finally:
        env_file.write_text(settings)


# The object store's /data on a 1100 MB disk of its own (a tmpfs volume): SeaweedFS makes one
# 1 GB volume there, which a 1200 MB artifact cannot fit in
FULL_STORE = """
services:
  s3:
    volumes: !override
      - s3-full:/data
volumes:
  s3-full:
    driver_opts: {type: tmpfs, device: tmpfs, o: "size=1100m,uid=%(uid)s,gid=%(gid)s"}
"""

FILL = r"""
import json, os, sys, time
from mlflow import MlflowClient

client, scratch, answer = MlflowClient(), sys.argv[1], []
run = client.create_run(client.create_experiment("full store")).info.run_id
for megabytes in (10, 1200):
    path = os.path.join(scratch, f"weights-{megabytes}.bin")
    with open(path, "wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1024**2))
    started = time.monotonic()
    try:
        client.log_artifact(run, path)
        answer.append({"ok": True})
    except Exception as error:
        answer.append({"ok": False, "error": f"{type(error).__name__}: {error}"})
    answer[-1]["seconds"] = time.monotonic() - started
    os.unlink(path)
print(json.dumps(answer))
"""

# One small artifact logged (prints the run and its SHA-256), then fetched again (prints it)
KEEP = r"""
import hashlib, os, sys
from mlflow import MlflowClient
path, client = sys.argv[1], MlflowClient()
data = os.urandom(64 * 1024)
open(path, "wb").write(data)
run = client.create_run(client.create_experiment("kept across the swap")).info.run_id
client.log_artifact(run, path)
print(run, hashlib.sha256(data).hexdigest())
"""
FETCH = r"""
import hashlib, os, sys
from mlflow import MlflowClient
os.makedirs(sys.argv[2])
local = MlflowClient().download_artifacts(sys.argv[1], "kept.bin", sys.argv[2])
print(hashlib.sha256(open(local, "rb").read()).hexdigest())
"""


def test_a_full_artifact_store_is_one_clear_error_at_once_not_minutes_of_500s(
    team_stack: TeamStack, tmp_path
):
    uid = team_stack.compose("exec", "-T", "s3", "id", "-u").stdout.strip()
    gid = team_stack.compose("exec", "-T", "s3", "id", "-g").stdout.strip()
    # An artifact on the team's store before the swap, to find intact after it
    kept = subprocess.run(
        [sys.executable, "-c", KEEP, str(tmp_path / "kept.bin")],
        env=outside_env(team_stack), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert kept.returncode == 0, kept.stderr[-2000:]
    run, digest = kept.stdout.split()[-2:]
    override = tmp_path / "full-store.yaml"
    override.write_text(FULL_STORE % {"uid": uid, "gid": gid})
    files = ["-f", "compose.yaml", "-f", "compose.team.yaml", "-f", str(override)]
    # A recreated container keeps the volumes of the one it replaces: removed first
    assert team_stack.compose("rm", "--stop", "--force", "s3").returncode == 0
    try:
        swapped = team_stack.compose(*files, "up", "--detach", "--wait", "--no-deps", "s3")
        assert swapped.returncode == 0, swapped.stderr[-2000:]
        result = subprocess.run(
            [sys.executable, "-c", FILL, str(tmp_path)],
            env=outside_env(team_stack), cwd=tmp_path, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        fits, too_big = json.loads(result.stdout.strip().splitlines()[-1])
        assert fits["ok"], fits
        # MLflow's client retries a 500 five times with backoff (minutes); a 507 it does not
        assert not too_big["ok"] and too_big["seconds"] < 120, too_big
        error = too_big["error"]
        assert "507 Server Error: Insufficient Storage" in error, error
        message = json.loads(error.split("Response text: ", 1)[1])["message"]
        assert message.startswith("the artifact store has no room for weights-1200.bin"), message
        assert "\n" not in message and "make gc" in message, message
        logged = team_stack.compose("logs", "--since", "10m", "mlflow").stdout
        assert logged.count("no room for weights-1200.bin") == 1, logged[-3000:]
        assert "Traceback" not in logged.split("no room for weights-1200.bin")[-1], logged[-3000:]
    finally:
        # The team's store back on its own volume, unchanged, for the tests after this one
        team_stack.compose(*files, "rm", "--stop", "--force", "s3")
        back = team_stack.compose("up", "--detach", "--wait", "--no-deps", "s3")
        volume = f"{team_stack.name}_s3-full"
        subprocess.run(["docker", "volume", "rm", volume], capture_output=True, check=False)
    assert back.returncode == 0, back.stderr[-2000:]
    found = subprocess.run(
        [sys.executable, "-c", FETCH, run, str(tmp_path / "back")],
        env=outside_env(team_stack), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.split()[-1] == digest
