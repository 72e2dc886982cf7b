"""The quick start, `make init` and `make backup` on a Mac-like host: a non-root user (UID 4343,
not 1000, in the docker group) whose PATH has `sed`, `grep`, `find`, `xargs`, `readlink`,
`stat` and `date` that refuse GNU-only options as BSD's do, and a `bash` that refuses bash 4
(`declare -A`, `mapfile`), with make's recipes run by /bin/sh (dash). Every one of those tools
logs its calls: the host side calls none of them, so their flavour cannot matter."""

from __future__ import annotations

import grp
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
import pytest

from tests.helpers import (
    REPO_ROOT,
    copy_project,
    project_resources,
    remove_project_images,
    unique_name,
)

pytestmark = pytest.mark.tools

USER_UID = 4343
# Each tool and the GNU-only options a Mac's refuses (sed -i without a suffix argument is GNU's)
REFUSED = {
    "sed": "-i|-i*|-r|-z|--*",
    "grep": "-P|-Z|--null|-z|--*",
    "find": "-printf|-regextype|-maxdepth",
    "xargs": "-r|--no-run-if-empty|--*",
    "readlink": "-f|-e|-m|--*",
    "stat": "-c|--*",
    "date": "-d|--date*|-I*|--*",
}
WRAPPER = """#!/bin/sh
# BSD-like {tool}: every call logged, GNU-only options refused (exit 64)
echo "{tool} $*" >>"{log}"
for arg in "$@"; do
  case "$arg" in
    {refused}) echo "{tool}: illegal option -- $arg (a Mac's {tool})" >&2; exit 64 ;;
  esac
done
exec {real} "$@"
"""
BASH = """#!/bin/sh
# bash 3.2 as a Mac ships it: no associative arrays, no mapfile
echo "bash $*" >>"{log}"
for arg in "$@"; do
  if [ -f "$arg" ] && grep -Eq 'declare -A|mapfile|readarray' "$arg"; then
    echo "bash: $arg needs bash 4 (declare -A / mapfile)" >&2; exit 64
  fi
done
exec {real} "$@"
"""


def mac_path(folder: Path, log: Path) -> str:
    """A folder of the BSD-like tools (see the module's docstring), first on a PATH."""
    folder.mkdir()
    for tool, refused in REFUSED.items():
        real = shutil.which(tool, path="/usr/bin:/bin")
        text = WRAPPER.format(tool=tool, log=log, refused=refused, real=real)
        (folder / tool).write_text(text)
    (folder / "bash").write_text(BASH.format(log=log, real=shutil.which("bash")))
    for tool in folder.iterdir():
        tool.chmod(0o755)
    return f"{folder}:/usr/local/bin:/usr/bin:/bin"


def test_quick_start_init_and_backup_work_with_a_mac_like_userland(built_images):
    base = Path(tempfile.mkdtemp(prefix="mlstack-mac-"))
    base.chmod(0o755)
    directory = copy_project(base / "mlstack")
    home = base / "home"
    home.mkdir()
    log = base / "calls.log"
    log.touch()
    path = mac_path(base / "bin", log)
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", f"{USER_UID}:{USER_UID}", str(base)], check=True)
        docker_gid = grp.getgrnam("docker").gr_gid
        as_user = [
            "setpriv",
            f"--reuid={USER_UID}",
            f"--regid={USER_UID}",
            f"--groups={docker_gid}",
            "--",
        ]
    else:
        as_user = []
    name = unique_name("mac")
    env = {
        "PATH": path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "COMPOSE_PROJECT_NAME": name,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": "*",
    }
    if os.environ.get("EXTRA_CA_CERTS"):
        env["EXTRA_CA_CERTS"] = os.environ["EXTRA_CA_CERTS"]

    def user(*command: str, ok: bool = True) -> str:
        """A command as the user; its output (stdout then stderr), asserting its success
        when ``ok``, else its failure."""
        result = subprocess.run(
            [*as_user, *command],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert (result.returncode == 0) == ok, (
            command,
            result.stdout[-3000:],
            result.stderr[-3000:],
        )
        return result.stdout + result.stderr

    client = docker.from_env()
    initialised = unique_name("macinit")
    try:
        started = user("make", "SHELL=/bin/sh", "up")
        mlflow_url = re.search(r"^MLflow:\s+(http://127\.0\.0\.1:\d+)$", started, re.M)[1]
        assert re.search(r"^Jupyter: http://127\.0\.0\.1:\d+/lab\?token=\w{48}$", started, re.M)
        # The README's command, as a user types it
        trained = user(*"docker compose run --rm bash python train.py --n-estimators 10".split())
        assert "logged to experiment" in trained, trained
        assert f"open: {mlflow_url}/#/experiments/" in trained
        assert f"MLflow:  {mlflow_url}" in user("make", "SHELL=/bin/sh", "urls")
        user("make", "SHELL=/bin/sh", "backup")
        archives = list((directory / "backups").glob("mlflow-*.tar.gz"))
        assert len(archives) == 1 and archives[0].stat().st_uid == (
            USER_UID if as_user else os.getuid()
        )
        # The README's order (make up, then make init) refuses while the stack runs
        # From here the project's name comes from .env alone, as in a user's shell
        env.pop("COMPOSE_PROJECT_NAME")
        refused = user("make", "--no-print-directory", "init", f"NAME={initialised}", ok=False)
        errors = [line for line in refused.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, refused
        assert "still has containers; run 'make down' first" in errors[0]
        assert f"COMPOSE_PROJECT_NAME={name}" in (directory / ".env").read_text()
        user("make", "SHELL=/bin/sh", "down")
        user("make", "SHELL=/bin/sh", "init", f"NAME={initialised}")
        assert f"COMPOSE_PROJECT_NAME={initialised}" in (directory / ".env").read_text()
        # The host side called none of the tools whose flavour differs on a Mac
        assert log.read_text() == ""
    finally:
        subprocess.run(
            [
                "docker",
                "compose",
                "-p",
                name,
                "--profile",
                "*",
                "down",
                "--volumes",
                "--remove-orphans",
            ],
            cwd=directory,
            capture_output=True,
            timeout=300,
        )
        for project in (name, initialised):
            remove_project_images(client, project)
        left = project_resources(client, name)
        shutil.rmtree(base, ignore_errors=True)
    assert not left, f"teardown left {left}"


def test_a_user_outside_the_docker_group_is_told_to_join_it(tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to run make as a user outside the docker group")
    tmp_path.chmod(0o755)
    result = subprocess.run(
        [
            "setpriv",
            f"--reuid={USER_UID}",
            f"--regid={USER_UID}",
            "--clear-groups",
            "--",
            "make",
            "--no-print-directory",
            "up",
        ],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and len(errors) == 1, result.stderr
    assert "permission denied on its socket); add yourself to the docker group" in errors[0]
    assert not (REPO_ROOT / ".env").exists() or (REPO_ROOT / ".env").stat().st_uid != USER_UID
