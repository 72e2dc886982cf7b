"""Secure by default, checked on the running stack: loopback ports, a random token that lives
only in .env, MLflow's Host and Origin checks, non-root hardened containers, optional auth."""

from __future__ import annotations

import json
import re
import stat

import pytest
import requests

from tests.helpers import IMAGE_NAMES, copy_project, image_ref, run

pytestmark = pytest.mark.stack


def services(docker_client, stack) -> dict:
    """The project's running service containers, by service name."""
    label = f"com.docker.compose.project={stack.project}"
    return {
        c.labels["com.docker.compose.service"]: c
        for c in docker_client.containers.list(filters={"label": label})
    }


def set_setting(stack, key: str, value: str) -> None:
    """Set one setting in the project's .env, keeping the rest."""
    env_file = stack.directory / ".env"
    lines = [line for line in env_file.read_text().splitlines() if not line.startswith(f"{key}=")]
    env_file.write_text("\n".join([*lines, f"{key}={value}"]) + "\n")


def test_every_published_port_is_on_loopback(docker_client, stack):
    for name, container in services(docker_client, stack).items():
        bindings = container.attrs["HostConfig"]["PortBindings"]
        assert bindings, name
        for port in bindings.values():
            assert {b["HostIp"] for b in port} == {"127.0.0.1"}, (name, port)


def test_env_is_private_ignored_by_git_and_its_token_random_per_project(stack, tmp_path):
    info = (stack.directory / ".env").stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert run(["git", "check-ignore", "--quiet", ".env"]).returncode == 0
    other = copy_project(tmp_path / "other")
    assert run(["make", "--no-print-directory", ".env"], other).returncode == 0
    tokens = [
        re.search(r"^JUPYTER_TOKEN=([0-9a-f]{48})$", (d / ".env").read_text(), re.M)[1]
        for d in (stack.directory, other)
    ]
    assert tokens[0] != tokens[1]


def test_the_token_is_in_no_image_config_history_or_layer(docker_client, stack):
    token = stack.token().encode()
    for name in IMAGE_NAMES:
        image = docker_client.images.get(image_ref(name))
        assert token not in json.dumps(image.attrs).encode(), name
        assert token not in json.dumps(image.history()).encode(), name
    # The images Jupyter and the runner run: every byte of every layer
    for name in ("jupyter", "bash"):
        tail = b""
        for chunk in docker_client.images.get(image_ref(name)).save(chunk_size=1 << 20):
            assert token not in tail + chunk, name
            tail = chunk[-len(token) :]


def test_jupyter_refuses_the_api_without_the_token(stack):
    base = stack.urls["jupyter"].split("/lab")[0]
    for path in ("/api/contents", "/api/kernels", "/api/sessions", "/api/terminals"):
        assert requests.get(f"{base}{path}", timeout=10).status_code == 403, path
    login = requests.get(f"{base}/lab", allow_redirects=False, timeout=10)
    assert login.status_code == 302 and "/login" in login.headers["Location"]


def test_mlflow_refuses_foreign_hosts_and_cross_origin_writes(stack):
    url = stack.urls["mlflow"]
    search = f"{url}/api/2.0/mlflow/experiments/search"
    # DNS rebinding: a page of another site reaching the port under its own name
    foreign = requests.get(
        search, params={"max_results": 1}, headers={"Host": "attacker.example.com"}, timeout=10
    )
    assert foreign.status_code == 403
    create = f"{url}/api/2.0/mlflow/experiments/create"
    cross = requests.post(
        create,
        json={"name": "from-another-site"},
        headers={"Origin": "http://attacker.example.com"},
        timeout=10,
    )
    assert cross.status_code == 403
    assert requests.get(search, params={"max_results": 1}, timeout=10).status_code == 200
    sibling = stack.compose(
        "run",
        "--rm",
        "bash",
        "python",
        "-c",
        "import requests; print(requests.get('http://mlflow:5000/api/2.0/mlflow/experiments"
        "/search?max_results=1', timeout=10).status_code)",
    )
    assert sibling.stdout.strip().splitlines()[-1] == "200", sibling.stderr


def test_containers_are_non_root_hardened_and_mlflow_read_only(docker_client, stack):
    containers = services(docker_client, stack)
    for name, container in containers.items():
        host = container.attrs["HostConfig"]
        assert "no-new-privileges:true" in host["SecurityOpt"], name
        assert host["CapDrop"] == ["ALL"], name
        uid = container.exec_run(["id", "-u"]).output.decode().strip()
        assert uid != "0", name
        status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
        assert re.search(r"^CapEff:\s+0+$", status, re.M), name
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), name
    mlflow = containers["mlflow"]
    assert mlflow.attrs["HostConfig"]["ReadonlyRootfs"] is True
    attempt = mlflow.exec_run(["touch", "/opt/venv/tampered"])
    assert attempt.exit_code != 0 and b"Read-only file system" in attempt.output


def test_optional_auth_answers_401_and_the_stack_logs_with_its_credentials(stack):
    set_setting(stack, "MLSTACK_MLFLOW_AUTH", "true")
    try:
        stack.up()
        url = stack.urls["mlflow"]
        search = f"{url}/api/2.0/mlflow/experiments/search"
        password = re.search(
            r"^MLFLOW_ADMIN_PASSWORD=(\S+)$", (stack.directory / ".env").read_text(), re.M
        )[1]
        assert len(password) >= 12
        assert requests.get(search, params={"max_results": 1}, timeout=10).status_code == 401
        wrong = requests.get(search, params={"max_results": 1}, auth=("admin", "wrong"), timeout=10)
        assert wrong.status_code == 401
        result = stack.compose(
            "run", "--rm", "bash", "python", "train.py", "--n-estimators", "5", "--run-name", "auth"
        )
        assert result.returncode == 0, result.stderr
        run_id = re.search(r"^run ([0-9a-f]{32})", result.stdout, re.M)[1]
        got = requests.get(
            f"{url}/api/2.0/mlflow/runs/get",
            params={"run_id": run_id},
            auth=("admin", password),
            timeout=10,
        )
        assert got.status_code == 200 and got.json()["run"]["info"]["run_name"] == "auth"
    finally:
        set_setting(stack, "MLSTACK_MLFLOW_AUTH", "false")
        stack.up()
