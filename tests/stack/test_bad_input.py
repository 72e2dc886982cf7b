"""Bad input gets one clear line on stderr, a non-zero exit, and loses nothing: Docker missing or
unreachable, Compose v1 only or too old, a broken .env, a missing env/ file, an unknown image,
a bad option to train.py, a tracking server that is down, a full disk."""

from __future__ import annotations

import secrets

import os
import re
import shutil
import sys
import stat
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, copy_project, run


def one_error_line(stderr: str) -> str:
    """The single ``error: ...`` line of ``stderr``.

    Raises:
        AssertionError: when there is not exactly one such line.
    """
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def executable(path: Path, text: str) -> Path:
    """Write a small shell script to ``path`` and make it executable."""
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def bare_bin(tmp_path) -> Path:
    """A folder with only the programs the host side needs (make and python3), without docker:
    make's recipes run in /bin/sh, every step in Python."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "make").symlink_to(shutil.which("make"))
    # The interpreter itself (a version manager's python3 on PATH may be a bash script)
    (folder / "python3").symlink_to(os.path.realpath(sys.executable))
    return folder


def make_up(env: dict[str, str]):
    """`make up` in the repo; every case here stops at the preflight, before anything is made."""
    return run(["make", "--no-print-directory", "up"], env=env, timeout=120)


def test_make_up_without_docker_says_to_install_it(bare_bin):
    result = make_up({"PATH": str(bare_bin), "HOME": os.environ["HOME"]})
    assert result.returncode != 0
    assert "docker is not installed" in one_error_line(result.stderr)


def test_make_up_without_python3_says_to_install_it(bare_bin):
    (bare_bin / "python3").unlink()
    result = make_up({"PATH": str(bare_bin), "HOME": os.environ["HOME"]})
    assert result.returncode != 0
    assert "python3 is missing" in one_error_line(result.stderr)


def test_make_up_with_an_unreachable_daemon_says_to_start_it(tmp_path):
    env = os.environ | {"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    result = make_up(env)
    assert result.returncode != 0
    assert "Docker daemon is not reachable" in one_error_line(result.stderr)


def test_make_up_with_only_compose_v1_asks_for_compose_v2(tmp_path, bare_bin):
    # A docker client without the Compose v2 plugin (it answers as the CLI does for an unknown
    # command), beside Compose v1's own program
    executable(
        bare_bin / "docker",
        "#!/bin/sh\n"
        'if [ "$1" = compose ]; then echo "docker: unknown command: docker compose" >&2; exit 1; fi\n'
        f'exec {shutil.which("docker")} "$@"\n',
    )
    executable(bare_bin / "docker-compose", "#!/bin/sh\necho 'docker-compose version 1.29.2'\n")
    env = {"PATH": str(bare_bin), "HOME": os.environ["HOME"], "DOCKER_CONFIG": str(tmp_path)}
    result = make_up(env)
    assert result.returncode != 0
    assert "only Compose v1" in one_error_line(result.stderr)


def test_make_up_with_an_old_compose_says_which_version_is_needed(tmp_path):
    # A Compose plugin that reports 2.3.3 (what Debian 12's docker-compose-plugin era shipped)
    plugins = tmp_path / "cli-plugins"
    plugins.mkdir()
    executable(
        plugins / "docker-compose",
        "#!/bin/sh\n"
        'if [ "$1" = docker-cli-plugin-metadata ]; then\n'
        '  echo \'{"SchemaVersion":"0.1.0","Vendor":"Docker Inc.","Version":"v2.3.3"}\'\n'
        "else echo 2.3.3; fi\n",
    )
    result = make_up(os.environ | {"DOCKER_CONFIG": str(tmp_path)})
    assert result.returncode != 0
    line = one_error_line(result.stderr)
    assert "Compose 2.3.3 is too old" in line and "2.20.0" in line


def test_make_build_with_an_unknown_image_lists_the_known_ones(tmp_path):
    project = copy_project(tmp_path / "project")
    result = run(["make", "--no-print-directory", "build", "IMAGES=no-such-image"], project)
    assert result.returncode != 0
    line = one_error_line(result.stderr)
    assert "unknown image 'no-such-image'" in line and "jupyter" in line


def test_make_up_with_a_malformed_env_line_says_so_and_keeps_the_file(tmp_path):
    project = copy_project(tmp_path / "project")
    assert run(["make", "--no-print-directory", ".env"], project).returncode == 0
    env_file = project / ".env"
    broken = env_file.read_text() + "this line is not a setting\n"
    env_file.write_text(broken)
    result = run(["make", "--no-print-directory", "up"], project, timeout=120)
    assert result.returncode != 0
    line = one_error_line(result.stderr)
    assert "fix .env or env/" in line and ".env: line" in line
    assert env_file.read_text() == broken


def test_make_up_with_a_missing_env_file_names_it(tmp_path):
    project = copy_project(tmp_path / "project")
    assert run(["make", "--no-print-directory", ".env"], project).returncode == 0
    (project / "env/stack.env").unlink()
    result = run(["make", "--no-print-directory", "up"], project, timeout=120)
    assert result.returncode != 0
    assert "env/stack.env not found" in one_error_line(result.stderr)


def test_an_emptied_jupyter_token_gets_advice_that_works_and_make_completes_it(tmp_path):
    project = copy_project(tmp_path / "project")
    assert run(["make", "--no-print-directory", ".env"], project).returncode == 0
    env_file = project / ".env"
    kept = {
        line for line in env_file.read_text().splitlines() if not line.startswith("JUPYTER_TOKEN=")
    }
    env_file.write_text(
        re.sub(r"^JUPYTER_TOKEN=.*$", "JUPYTER_TOKEN=", env_file.read_text(), flags=re.M)
    )
    # Plain compose refuses in one line that names the setting and the fix
    refused = run(["docker", "compose", "config", "--quiet"], project)
    assert refused.returncode != 0
    assert "JUPYTER_TOKEN" in refused.stderr and "run 'make .env'" in refused.stderr
    # The advice, followed (any make command does the same): a new token, the rest as it was
    followed = run(["make", "--no-print-directory", ".env"], project)
    assert followed.returncode == 0, followed.stderr
    token = re.search(r"^JUPYTER_TOKEN=(\S*)$", env_file.read_text(), re.M)[1]
    assert len(token) == 48
    assert kept <= set(env_file.read_text().splitlines())
    config = run(["docker", "compose", "config", "--quiet"], project)
    assert config.returncode == 0, config.stderr


def test_extra_ca_certs_given_once_is_remembered_and_never_dropped_when_unset(
    tmp_path, built_images, docker_client
):
    project = copy_project(tmp_path / "project")
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("# the proxy's CA bundle (only remembered here, never built)\n")
    env = {key: value for key, value in os.environ.items() if key != "EXTRA_CA_CERTS"}
    given = run(["make", "--no-print-directory", ".env", f"EXTRA_CA_CERTS={bundle}"], project, env)
    assert given.returncode == 0, given.stderr
    assert f"EXTRA_CA_CERTS={bundle}" in (project / ".env").read_text().splitlines()

    # A new shell without the setting, and a .env without it: the base image stays as it is
    # (its certificates are kept), not rebuilt without the proxy's CA
    lines = (project / ".env").read_text().splitlines()
    (project / ".env").write_text(
        "".join(f"{line}\n" for line in lines if not line.startswith("EXTRA_CA_CERTS="))
    )
    base = docker_client.images.get(built_images["base"]).id
    result = run(["python3", "scripts/stackctl", "build", "base"], project, env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"build: {built_images['base']} step" not in result.stdout, result.stdout
    assert docker_client.images.get(built_images["base"]).id == base


def test_a_project_folder_with_spaces_is_the_containers_project_folder(stack):
    # Every end-to-end test runs in such a folder: make, compose and the bind mount cope. A file
    # the runner writes in /project appears in that folder on the host
    assert " " in stack.directory.name
    marker = f"written-in-the-runner-{secrets.token_hex(4)}"
    result = stack.compose("run", "--rm", "--no-deps", "bash", "touch", marker)
    try:
        assert result.returncode == 0, result.stderr
        assert (stack.directory / "project" / marker).stat().st_uid == stack.uid
    finally:
        (stack.directory / "project" / marker).unlink(missing_ok=True)


@pytest.mark.parametrize(
    "option, message",
    [
        (["--n-estimators", "many"], "'many' is not a valid integer"),
        (["--max-depth", "0"], "0 is not in the range x>=1"),
        (["--test-size", "1.5"], "1.5 is not in the range 0<x<1"),
        (["--no-such-option"], "No such option '--no-such-option'"),
    ],
)
def test_train_rejects_a_bad_option_in_one_line(stack, option, message):
    result = stack.compose("run", "--rm", "--no-deps", "bash", "python", "train.py", *option)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error:" in line.lower()]
    assert len(errors) == 1 and message in errors[0], result.stderr


def test_train_with_the_tracking_server_unreachable_says_so_in_one_line(stack):
    result = stack.compose(
        "run",
        "--rm",
        "--no-deps",
        "--env",
        "MLFLOW_TRACKING_URI=http://no-such-server:5000",
        "bash",
        "python",
        "train.py",
    )
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "http://no-such-server:5000 is not reachable" in line
    assert "Traceback" not in result.stderr


def test_train_with_a_full_disk_says_so_in_one_line(stack, docker_client):
    volume = docker_client.volumes.create(
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=64k,mode=1777"},
    )
    try:
        result = stack.compose(
            "run", "--rm", "--volume", f"{volume.name}:/tmp", "bash", "python", "train.py"
        )
    finally:
        volume.remove(force=True)
    assert result.returncode == 1
    assert "no space left on the device" in one_error_line(result.stderr)
    assert "Traceback" not in result.stderr
