"""Secure by default, checked on the running stack: loopback ports, a random token that lives
only in .env, MLflow's Host and Origin checks, non-root hardened containers, optional auth."""

from __future__ import annotations

import json
import os
import pwd
import re
import stat

import pytest
import requests

from tests.helpers import (
    IMAGE_NAMES,
    PROJECT_SERVICES,
    copy_project,
    image_ref,
    project_image_ref,
    run,
)

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
    # The stack's shared images and the project's own
    refs = [image_ref(name) for name in IMAGE_NAMES]
    refs += [project_image_ref(stack.project, service) for service in PROJECT_SERVICES]
    for ref in refs:
        image = docker_client.images.get(ref)
        assert token not in json.dumps(image.attrs).encode(), ref
        assert token not in json.dumps(image.history()).encode(), ref
    # The images Jupyter and the runner run: every byte of every layer
    for service in PROJECT_SERVICES:
        name = project_image_ref(stack.project, service)
        tail = b""
        for chunk in docker_client.images.get(name).save(chunk_size=1 << 20):
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


def setting(stack, key: str) -> str:
    """A value of the stack's .env (written by make)."""
    return re.search(rf"^{key}=(\S*)$", (stack.directory / ".env").read_text(), re.M)[1]


def run_user(stack, run_name: str, auth: tuple[str, str] | None = None) -> str:
    """Train a run named ``run_name``; return its user as MLflow's REST API gives it (the
    ``mlflow.user`` tag: "Created by" in the UI)."""
    result = stack.compose(
        "run", "--rm", "bash", "python", "train.py", "--n-estimators", "5", "--run-name", run_name
    )
    assert result.returncode == 0, result.stderr
    run_id = re.search(r"^run ([0-9a-f]{32})", result.stdout, re.M)[1]
    got = requests.get(
        f"{stack.urls['mlflow']}/api/2.0/mlflow/runs/get",
        params={"run_id": run_id},
        auth=auth,
        timeout=10,
    )
    assert got.status_code == 200 and got.json()["run"]["info"]["run_name"] == run_name
    return {tag["key"]: tag["value"] for tag in got.json()["run"]["data"]["tags"]}["mlflow.user"]


def test_runs_record_the_host_users_name_not_admin(stack):
    user = setting(stack, "MLSTACK_USER")
    # make took it from the host user who ran it (the environment may name another)
    assert user == os.environ.get("MLSTACK_USER", pwd.getpwuid(os.getuid()).pw_name)
    assert run_user(stack, "user-without-auth") == user != "admin"


def test_optional_auth_answers_401_and_the_stack_logs_in_as_the_host_user(stack):
    set_setting(stack, "MLSTACK_MLFLOW_AUTH", "true")
    try:
        stack.up()
        url = stack.urls["mlflow"]
        search = f"{url}/api/2.0/mlflow/experiments/search"
        user, password = setting(stack, "MLSTACK_USER"), setting(stack, "MLSTACK_TRACKING_PASSWORD")
        assert len(password) >= 12 and password != setting(stack, "MLFLOW_ADMIN_PASSWORD")
        assert requests.get(search, params={"max_results": 1}, timeout=10).status_code == 401
        wrong = requests.get(search, params={"max_results": 1}, auth=(user, "wrong"), timeout=10)
        assert wrong.status_code == 401
        # The logged-in user is the run's user
        assert run_user(stack, "auth", auth=(user, password)) == user
    finally:
        set_setting(stack, "MLSTACK_MLFLOW_AUTH", "false")
        stack.up()


def test_jupyterlab_makes_no_calls_home(stack):
    base = stack.urls["jupyter"].split("/lab")[0]
    headers = {"Authorization": f"token {stack.token()}"}
    plugin = "@jupyterlab/apputils-extension:notification"
    settings = requests.get(f"{base}/lab/api/settings/{plugin}", headers=headers, timeout=10)
    assert settings.status_code == 200, settings.text
    defaults = {k: v.get("default") for k, v in settings.json()["schema"]["properties"].items()}
    # "false": never fetch the news, and never ask on first open whether to
    assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False
    news = requests.get(f"{base}/lab/api/news", headers=headers, timeout=10)
    assert news.status_code == 200 and news.json() == {"news": []}
