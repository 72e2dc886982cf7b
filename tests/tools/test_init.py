"""Starting a new project from the stack: `make init NAME=...` in a copy names its compose
project and its own images, after which its `make up` runs side by side with another stack (the
test's own) without sharing a container, network, volume, project image or port; only the
stack's shared images (the tracking server's among them) are common. Bad names get one clear
error line and change nothing."""

from __future__ import annotations

import re

import docker
import pytest
import requests

from tests.helpers import (
    REPO_ROOT,
    Project,
    copy_project,
    image_ref,
    project_image_ref,
    run,
    unique_name,
)

pytestmark = pytest.mark.tools


def stack_resources(client: docker.DockerClient, project: Project) -> dict[str, set[str]]:
    """The running stack's container names, their images, volumes, networks and host ports."""
    label = {"label": f"com.docker.compose.project={project.name}"}
    containers = client.containers.list(filters=label)
    return {
        "containers": {c.name for c in containers},
        "images": {c.attrs["Config"]["Image"] for c in containers},
        "volumes": {v.name for v in client.volumes.list(filters=label)},
        "networks": {n.name for n in client.networks.list(filters=label)},
        "ports": {
            binding["HostPort"]
            for c in containers
            for bindings in c.ports.values()
            for binding in bindings or []
        },
    }


def up(project: Project, *options: str) -> str:
    """`make up` (with make ``options``) in the project; returns the MLflow URL it printed."""
    result = project.make(*options, "up")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return re.search(r"^MLflow:\s+(http\S+)$", result.stdout, re.M)[1]


def test_make_init_gives_a_copy_its_own_stack_beside_another_one(
    new_project, built_images, docker_client
):
    own = new_project("own", unique_name("own"))
    own_mlflow = up(own)
    before = stack_resources(docker_client, own)

    # The new project: a fresh clone as its user has it, no names from the test's environment
    name = unique_name("init")
    copy = new_project("mlstack", None, {"COMPOSE_PROJECT_NAME": None})
    images_env = (copy.directory / "env/images.env").read_text()
    result = copy.make("init", f"NAME={name}")
    assert result.returncode == 0, result.stderr
    assert f"images {name}-jupyter and {name}-bash" in result.stdout
    assert copy.name == name
    # The stack's settings are not the project's to change
    assert (copy.directory / "env/images.env").read_text() == images_env
    # The project folder holds the template's files and no others, its package renamed
    package = name.replace("-", "_")
    template = {
        re.sub(r"^src/[^/]+/", f"src/{package}/", str(p.relative_to(REPO_ROOT / "project")))
        for p in (REPO_ROOT / "project").rglob("*")
        if p.is_file() and tracked(p)
    }
    made = {
        str(p.relative_to(copy.directory / "project"))
        for p in (copy.directory / "project").rglob("*")
        if p.is_file() and ".stack-tests" not in p.parts and "__pycache__" not in p.parts
    }
    assert made == template
    copy_mlflow = up(copy)
    # Its jobs log to its own experiment, named by init
    trained = copy.compose("run", "--rm", "bash", "python", "train.py", "--n-estimators", "5")
    assert f"logged to experiment '{name}'" in trained.stdout, trained.stdout + trained.stderr

    own_after = stack_resources(docker_client, own)
    copy_resources = stack_resources(docker_client, copy)
    # The first stack was left alone: the same containers, still running
    assert own_after == before
    shared = {image_ref("mlflow")}
    for kind, own_values in own_after.items():
        assert own_values and copy_resources[kind], kind
        common = own_values & copy_resources[kind]
        assert common == (shared if kind == "images" else set()), kind
    assert copy_resources["volumes"] == {f"{name}_mlflow-data", f"{name}_mlflow-staging"}
    assert copy_resources["images"] - shared == {project_image_ref(name, "jupyter")}
    for url in (own_mlflow, copy_mlflow):
        assert requests.get(f"{url}/health", timeout=10).text.strip() == "OK"


def tracked(path) -> bool:
    """Whether git tracks ``path`` in the repository (the template's files, not local ones)."""
    return run(["git", "ls-files", "--error-unmatch", str(path)]).returncode == 0


@pytest.mark.parametrize("name", ["", "My_Project", "-starts-with-a-dash", "ends-", "a b"])
def test_make_init_refuses_a_bad_name_with_one_line_and_changes_nothing(tmp_path, name):
    directory = copy_project(tmp_path / "project")
    before = {path: (directory / path).read_text() for path in ("env/images.env", "compose.yaml")}
    result = run(["make", "--no-print-directory", "init", f"NAME={name}"], directory)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "lowercase letters, digits and dashes" in errors[0]
    assert {path: (directory / path).read_text() for path in before} == before
    assert not (directory / ".env").exists()
