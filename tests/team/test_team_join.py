"""A member joins the team's server in one command: `make join` checks the credentials (a wrong
password, an unreachable server and an untrusted certificate are one line each, .env
unchanged), then `make up` runs Jupyter and the runner with no tracking server of their own,
runs are logged as the member and their links name the shared server; `make leave` brings the
local server back with its earlier runs."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import docker
import requests

from tests.helpers import unique_name
from tests.team.helpers import TeamStack

MEMBER, PASSWORD = "ada-joins", "ada-chose-a-long-password"


def make(project, *args: str, stdin: str = "", env: dict | None = None):
    """make in ``project``'s folder with ``stdin`` piped in."""
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=project.directory,
        env=env or project.env, input=stdin, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def errors(result) -> list[str]:
    """The ``error:`` lines of a command's stderr."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SelfSignedServer:
    """A TLS server on 127.0.0.1 whose certificate no trust store knows (made with openssl)."""

    def __init__(self, folder: Path) -> None:
        key, cert = folder / "key.pem", folder / "cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(connection, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    def close(self) -> None:
        self.socket.close()


def test_a_member_joins_logs_as_themselves_on_the_shared_server_and_leaves(
    team_stack: TeamStack, new_project, tmp_path
):
    added = make(team_stack, "user-add", f"NAME={MEMBER}", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    member = new_project("joining member", unique_name("join"))
    # Its own local server first, with a run of its own
    assert make(member, "up").returncode == 0
    local = member.compose(
        "run", "--rm", "bash", "python", "train.py", "--experiment", "before-join",
        "--n-estimators", "5", "--curve-steps", "1",
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-2000:]
    local_run = re.search(r"^run ([0-9a-f]{32}) logged", local.stdout, re.MULTILINE)[1]
    env_file = member.directory / ".env"
    before = env_file.read_text()

    untrusted = SelfSignedServer(tmp_path)
    try:
        for url, password, says in (
            (team_stack.mlflow_url, "not-the-password-1", "refused ada-joins's password"),
            (f"http://127.0.0.1:{free_port()}", PASSWORD, "cannot reach"),
            (f"https://127.0.0.1:{untrusted.port}", PASSWORD, "is not trusted"),
        ):
            refused = make(member, "join", f"URL={url}", f"USER={MEMBER}", stdin=password + "\n")
            assert refused.returncode != 0 and len(errors(refused)) == 1, refused.stderr
            assert says in errors(refused)[0] and "nothing was written" in errors(refused)[0]
            assert env_file.read_text() == before
    finally:
        untrusted.close()

    joined = make(
        member, "join", f"URL={team_stack.mlflow_url}", f"USER={MEMBER}", stdin=PASSWORD + "\n"
    )
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.startswith(f"join: {MEMBER} on {team_stack.mlflow_url};")
    settings = env_file.read_text()
    assert "COMPOSE_FILE=compose.yaml:compose.member.yaml\n" in settings
    # The shared server is this machine's loopback port here: the runner takes the host's
    # network to reach it (a member's reaches https://mlflow.example.org instead)
    env_file.write_text(
        settings.replace("compose.member.yaml\n", "compose.member.yaml:compose.override.yaml\n")
    )
    (member.directory / "compose.override.yaml").write_text(
        "services:\n  bash:\n    network_mode: host\n"
    )
    up = make(member, "up")
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    assert re.search(rf"^MLflow:\s+{re.escape(team_stack.mlflow_url)}$", up.stdout, re.M)
    client = docker.from_env()
    try:
        services = {
            c.labels["com.docker.compose.service"]
            for c in client.containers.list(
                filters={"label": f"com.docker.compose.project={member.name}"}
            )
        }
    finally:
        client.close()
    assert services == {"jupyter"}, services
    trained = member.compose(
        "run", "--rm", "bash", "python", "train.py", "--experiment", "joined",
        "--n-estimators", "5", "--curve-steps", "1", "--register-model", "joined-wine",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    run_id = re.search(r"^run ([0-9a-f]{32}) logged", trained.stdout, re.MULTILINE)[1]
    assert f"{team_stack.mlflow_url}/#/experiments/" in trained.stdout, trained.stdout
    got = requests.get(
        f"{team_stack.mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": run_id},
        auth=team_stack.credentials, timeout=30,
    ).json()["run"]  # fmt: skip
    assert got["info"]["user_id"] == MEMBER
    # The registered model loads back from the shared server in the member's runner
    loaded = member.compose(
        "run", "--rm", "bash", "python", "-c",
        "import mlflow; m = mlflow.pyfunc.load_model('models:/joined-wine/1'); "
        "print('loaded', m.metadata.run_id)",
    )  # fmt: skip
    assert loaded.returncode == 0 and f"loaded {run_id}" in loaded.stdout, loaded.stderr[-2000:]
    # The member's containers hold the member's password, not the admin's
    jupyter_env = member.compose("exec", "-T", "jupyter", "env").stdout
    assert f"MLFLOW_TRACKING_PASSWORD={PASSWORD}" in jupyter_env.splitlines()
    assert team_stack.settings()["MLFLOW_ADMIN_PASSWORD"] not in jupyter_env

    left = make(member, "leave")
    assert left.returncode == 0, left.stderr
    assert "compose.member.yaml" not in env_file.read_text()
    assert "MLSTACK_TEAM_PASSWORD" not in env_file.read_text()
    again = make(member, "up")
    assert again.returncode == 0, again.stderr[-2000:]
    url = re.search(r"^MLflow:\s+(http\S+)$", again.stdout, re.MULTILINE)[1]
    assert url != team_stack.mlflow_url
    found = requests.get(f"{url}/api/2.0/mlflow/runs/get", params={"run_id": local_run}, timeout=30)
    assert found.status_code == 200, found.text
