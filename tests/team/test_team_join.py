"""A member joins the team's server in one command, through the team page's TLS reverse proxy
(Debian's nginx running the page's own block, a certificate signed by a CA made here): `make
join` checks the credentials (a wrong password, an unreachable server and an untrusted
certificate are one line each, .env unchanged), then `make up` runs Jupyter and the runner with
no tracking server of their own, runs are logged as the member and their links name the proxy's
URL; `make leave` brings the local server back with its earlier runs."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import requests
from dotenv import dotenv_values

from tests.helpers import REPO_ROOT, secret_holders, unique_name
from tests.team.helpers import TeamStack

MEMBER, PASSWORD = "ada-joins", "ada-chose-a-long-password"
READER_PASSWORD = "bob-chose-a-long-password"
# A member's own script with MLflow's client and its defaults: reads a run (its id in argv[1]),
# then tries to delete it; prints the run's user and the outcome
READER_CLIENT = """
import sys
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
client = MlflowClient()
print("read", client.get_run(sys.argv[1]).info.user_id)
try:
    client.delete_run(sys.argv[1])
    print("deleted")
except MlflowException as error:
    print("refused", error.get_http_status_code())
"""


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


def nginx_site(port: int, folder: Path, upstream: str) -> str:
    """The team page's nginx block, on 127.0.0.1:``port`` with the test's certificate, in front
    of ``upstream`` (the team server's http://127.0.0.1:<port>)."""
    page = (REPO_ROOT / "docs" / "team.md").read_text()
    (site,) = re.findall(r"```nginx\n(.*?)```", page, re.DOTALL)
    replaced = {
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "/etc/ssl/certs/mlflow.example.org.pem": str(folder / "server.pem"),
        "/etc/ssl/private/mlflow.example.org.key": str(folder / "server.key"),
        "http://127.0.0.1:32901": upstream,
    }
    for old, new in replaced.items():
        assert old in site, old
        site = site.replace(old, new)
    return site


class TlsProxy:
    """nginx (Debian's package) running the team page's site on 127.0.0.1, with a server
    certificate for 127.0.0.1 signed by a CA made here (``ca``: its PEM file)."""

    def __init__(self, folder: Path, upstream: str) -> None:
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

        # The extensions Python 3.13's strict verification wants of a CA and of a server
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=mlstack test CA", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
        (folder / "san.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nauthorityKeyIdentifier=keyid,issuer\n"
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
        )
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.pem")  # fmt: skip
        self.ca = folder / "ca.pem"
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        (folder / "nginx.conf").write_text(
            f"daemon off;\npid {folder}/nginx.pid;\nerror_log stderr;\n"
            "events {}\nhttp {\n  access_log off;\n"
            + "".join(
                f"  {kind}_temp_path {folder}/{kind};\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            + nginx_site(self.port, folder, upstream)
            + "}\n"
        )
        self.process = subprocess.Popen(
            ["/usr/sbin/nginx", "-c", str(folder / "nginx.conf"), "-p", str(folder), "-e", "stderr"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for _ in range(50):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        self.close()
        raise AssertionError(f"nginx did not listen: {self.process.stderr.read()}")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


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

    proxy = TlsProxy(tmp_path, team_stack.mlflow_url)
    try:
        joined_through(team_stack, member, proxy, env_file, before, local_run)
    finally:
        proxy.close()


def joined_through(team_stack, member, proxy: TlsProxy, env_file: Path, before: str, local_run):
    """The member's path through the TLS proxy (see the module's docstring)."""
    ca = f"CA={proxy.ca}"
    for url, password, extra, says in (
        (proxy.url, "not-the-password-1", ca, "refused ada-joins's password"),
        (f"http://127.0.0.1:{free_port()}", PASSWORD, ca, "cannot reach"),
        (proxy.url, PASSWORD, "CA=", "is not trusted"),
    ):
        refused = make(member, "join", f"URL={url}", f"USER={MEMBER}", extra, stdin=password + "\n")
        assert refused.returncode != 0 and len(errors(refused)) == 1, refused.stderr
        assert says in errors(refused)[0] and "nothing was written" in errors(refused)[0]
        assert env_file.read_text() == before

    joined = make(member, "join", f"URL={proxy.url}", f"USER={MEMBER}", ca, stdin=PASSWORD + "\n")
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.startswith(f"join: {MEMBER} on {proxy.url};")
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
    assert re.search(rf"^MLflow:\s+{re.escape(proxy.url)}$", up.stdout, re.M)
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
    # The link is on the proxy's URL: through TLS, with the CA the member's containers trust
    assert f"{proxy.url}/#/experiments/" in trained.stdout, trained.stdout
    got = requests.get(
        f"{team_stack.mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": run_id},
        auth=team_stack.credentials, timeout=30,
    ).json()["run"]  # fmt: skip
    assert got["info"]["user_id"] == MEMBER
    # A third person, a member the admin adds, reads ada's run through the proxy with a host
    # MLflow client and its own settings alone (the CA through MLflow's variable), and may not
    # delete it
    reader = "bob-reads"
    added = make(team_stack, "user-add", f"NAME={reader}", stdin=READER_PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    try:
        bob = subprocess.run(
            [sys.executable, "-c", READER_CLIENT, run_id], capture_output=True, text=True,
            timeout=120, cwd=member.directory.parent,
            env={"PATH": os.environ["PATH"], "HOME": str(member.directory.parent),
                 "MLFLOW_TRACKING_URI": proxy.url, "MLFLOW_TRACKING_USERNAME": reader,
                 "MLFLOW_TRACKING_PASSWORD": READER_PASSWORD,
                 "MLFLOW_TRACKING_SERVER_CERT_PATH": str(proxy.ca)},
        )  # fmt: skip
        assert bob.returncode == 0, bob.stderr[-2000:]
        assert bob.stdout.splitlines() == [f"read {MEMBER}", "refused 403"], bob.stdout
    finally:
        assert make(team_stack, "user-remove", f"NAME={reader}").returncode == 0
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
    # No container of the member's holds an admin password: the team's or its own local one's
    own_admin = dotenv_values(env_file)["MLFLOW_ADMIN_PASSWORD"]
    for admin_password in (team_stack.settings()["MLFLOW_ADMIN_PASSWORD"], own_admin):
        assert secret_holders(member.name, admin_password) == set()

    left = make(member, "leave")
    assert left.returncode == 0, left.stderr
    assert "compose.member.yaml" not in env_file.read_text()
    assert "MLSTACK_TEAM_PASSWORD" not in env_file.read_text()
    again = make(member, "up")
    assert again.returncode == 0, again.stderr[-2000:]
    url = re.search(r"^MLflow:\s+(http\S+)$", again.stdout, re.MULTILINE)[1]
    assert url != proxy.url
    found = requests.get(f"{url}/api/2.0/mlflow/runs/get", params={"run_id": local_run}, timeout=30)
    assert found.status_code == 200, found.text
