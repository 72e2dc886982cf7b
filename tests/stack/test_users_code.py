"""Code users bring: scripts and notebooks written for MLflow or Dask anywhere, run the way the
manual says, behave as they would against a plain MLflow server or Dask on a laptop. Each test
writes its own script or notebook into the project, as a user would copy one in."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from tests.helpers import REPO_ROOT, console_commands, run

# The manual page users bring their code with: docs/your-code.md
PAGE = REPO_ROOT / "docs" / "your-code.md"
WHO = "import os, pwd; print('name=' + pwd.getpwuid(os.getuid()).pw_name)"


def write(stack, relative: str, text: str) -> Path:
    """A file of the user's in the project folder, owned by the stack's UID."""
    path = stack.directory / "project" / relative
    path.write_text(textwrap.dedent(text))
    if os.getuid() == 0:
        os.chown(path, stack.uid, stack.uid)
    return path


def run_info(stack, run_id: str) -> dict:
    return stack.rest("runs/get", run_id=run_id)["run"]["info"]


@pytest.mark.parametrize("uid", [1001, 1000])
def test_every_container_knows_the_host_user_by_name(new_project, built_images, uid):
    project = new_project(
        f"uid{uid}",
        f"mlstack-uid{uid}-{os.urandom(3).hex()}",
        {"MLSTACK_UID": str(uid), "MLSTACK_GID": str(uid), "MLSTACK_USER": "ada"},
    )
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", f"{uid}:{uid}", str(project.directory)], check=True)
    started = project.make("up", "WORKERS=1")
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    probes = {
        "jupyter": ("exec", "-T", "jupyter", "sh", "-c", f'whoami && python -c "{WHO}"'),
        "runner": ("run", "--rm", "--no-deps", "bash", "sh", "-c", f'whoami && python -c "{WHO}"'),
        "dask-worker": ("exec", "-T", "dask-worker", "python", "-c", WHO),
        "serve": ("run", "--rm", "--no-deps", "serve", "python", "-c", WHO),
    }
    for where, command in probes.items():
        result = project.compose(*command)
        assert result.returncode == 0, (where, result.stderr[-2000:])
        assert "name=ada" in result.stdout, (where, result.stdout)
        if "whoami" in command[-1]:
            assert result.stdout.splitlines()[0] == "ada", (where, result.stdout)


def test_a_users_script_prints_one_run_link_on_the_hosts_url(stack):
    write(stack, "own_script.py", "import mlflow\nmlflow.log_metric('loss', 0.5)\n")
    result = stack.compose("run", "--rm", "-T", "bash", "python", "own_script.py")
    assert result.returncode == 0, result.stderr[-2000:]
    links = re.findall(r"View run \S+ at: (http\S+)", result.stdout)
    assert len(links) == 1, result.stdout
    assert links[0].startswith(stack.urls["mlflow"] + "/#/experiments/"), links


@pytest.mark.parametrize("crashes, status", [(True, "FAILED"), (False, "FINISHED")])
def test_a_script_that_raises_leaves_its_implicit_run_failed(stack, crashes, status):
    write(
        stack,
        "own_crash.py",
        """
        import sys
        import mlflow

        mlflow.log_metric("loss", 0.5)
        print("run_id=" + mlflow.active_run().info.run_id)
        if len(sys.argv) > 1:
            raise ValueError("the data has no rows")
        """,
    )
    arguments = ["crash"] if crashes else []
    result = stack.compose("run", "--rm", "-T", "bash", "python", "own_crash.py", *arguments)
    assert (result.returncode != 0) == crashes, result.stderr[-2000:]
    if crashes:
        assert "ValueError: the data has no rows" in result.stderr
    run_id = re.search(r"^run_id=(\w+)$", result.stdout, re.M)[1]
    assert run_info(stack, run_id)["status"] == status


NOTEBOOK_CELLS = [
    "import json, time\nimport dask.array as da\nfrom distributed import Client\nresults = {}",
    # Dask's tutorials start so
    'with Client(n_workers=2, threads_per_worker=1, memory_limit="1GB") as client:\n'
    "    results['local_address'] = client.scheduler.address\n"
    "    results['local_sum'] = float(da.ones((1000, 1000), chunks=250).sum().compute())",
    "start = time.time()\n"
    "with Client() as client:\n"
    "    results['default_seconds'] = time.time() - start\n"
    "    results['default_address'] = client.scheduler.address\n"
    "    results['default_sum'] = float(da.ones(10, chunks=5).sum().compute())\n"
    "    try:\n"
    "        client.cluster.scale(3)\n"
    "        results['scale'] = 'scaled'\n"
    "    except Exception as error:\n"
    "        results['scale'] = str(error)",
    "da.ones(10, chunks=5).sum().visualize(filename='/tmp/graph.png')\n"
    "import os\nresults['graph_bytes'] = os.path.getsize('/tmp/graph.png')",
    "with open('dask_probe.json', 'w') as file:\n    json.dump(results, file)",
]


def dask_in_a_kernel(stack) -> dict:
    cells = [
        {
            "cell_type": "code",
            "metadata": {},
            "source": source,
            "outputs": [],
            "execution_count": None,
        }
        for source in NOTEBOOK_CELLS
    ]
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    write(stack, "dask_probe.ipynb", json.dumps(notebook))
    result = stack.execute_notebook("dask_probe.ipynb", "--output-dir", "/tmp")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((stack.directory / "project/dask_probe.json").read_text())


def test_dask_code_runs_as_dasks_docs_write_it_with_and_without_the_stacks_cluster(stack):
    alone = dask_in_a_kernel(stack)
    assert alone["local_sum"] == 1_000_000 and alone["local_address"].startswith("tcp://127.0.0.1")
    # No cluster: Client() makes a local one, as Dask does anywhere
    assert alone["default_address"].startswith("tcp://127.0.0.1") and alone["default_sum"] == 10
    assert alone["default_seconds"] < 5, alone
    assert alone["graph_bytes"] > 1000
    started = stack.make("up", "WORKERS=2")
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        beside = dask_in_a_kernel(stack)
    finally:
        stack.make("up")
    assert beside["local_sum"] == 1_000_000 and beside["local_address"].startswith(
        "tcp://127.0.0.1"
    )
    assert beside["default_address"] == "tcp://dask-scheduler:8786" and beside["default_sum"] == 10
    assert beside["default_seconds"] < 5, beside
    assert "make up WORKERS=N" in beside["scale"]


def test_the_bring_your_own_code_page_runs_as_written(stack):
    commands = console_commands(PAGE)
    assert commands[0].startswith("docker compose run --rm bash python"), commands
    env = {k: v for k, v in stack.env.items() if k not in ("COMPOSE_PROJECT_NAME", "COMPOSE_FILE")}
    # The host's python with MLflow's client (the page says to install it), MLflow's defaults
    env = {k: v for k, v in env.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    result = run(["bash", "-ec", "\n".join(commands)], stack.directory, env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    links = re.findall(r"View run \S+ at: (http\S+)", result.stdout)
    assert len(links) == 2 and all(
        link.startswith(stack.urls["mlflow"]) for link in links
    ), result.stdout
    experiment = re.search(
        r"^MLFLOW_EXPERIMENT_NAME=(.+)$",
        (stack.directory / "project/project.env").read_text(),
        re.M,
    )[1]
    found = stack.rest("experiments/get-by-name", experiment_name=experiment)["experiment"]
    ids = {link.split("/runs/")[1] for link in links}
    assert {run_info(stack, run_id)["experiment_id"] for run_id in ids} == {found["experiment_id"]}
    response = requests.get(links[1], timeout=10)
    assert response.status_code == 200
