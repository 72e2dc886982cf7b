"""Starting a new project from the stack: `make init NAME=...` in a copy names its images and
its compose project, after which its `make up` runs side by side with another stack (the
test's own) without sharing a container, network, volume, image or port. Bad names get one
clear error line and change nothing."""

from __future__ import annotations

import re

import docker
import pytest
import requests

from tests.helpers import copy_project, run
from tests.tools.conftest import Project, unique_name

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


@pytest.fixture
def named_images(docker_client):
    """Collects image prefixes made by a test; their images are removed afterwards."""
    prefixes: list[str] = []
    yield prefixes
    for prefix in prefixes:
        # Untagging is allowed in any order; the last tag's removal deletes the image and the
        # build's intermediate layers once no child needs them
        for image in docker_client.images.list(filters={"reference": f"{prefix}/*"}):
            for tag in image.tags:
                docker_client.images.remove(tag)
        assert docker_client.images.list(filters={"reference": f"{prefix}/*"}) == []


def test_make_init_gives_a_copy_its_own_stack_beside_another_one(
    named_images, new_project, built_images, docker_client
):
    # named_images comes first: set up first, torn down last, after the stacks are down
    own = new_project("own", unique_name("own"))
    # The images are built (built_images); -o build: make up without rebuilding them in a copy
    own_mlflow = up(own, "-o", "build")
    before = stack_resources(docker_client, own)

    # The new project: a fresh clone as its user has it, no names from the test's environment
    name = unique_name("init")
    named_images.append(name)
    copy = new_project(
        "mlstack", None, {"COMPOSE_PROJECT_NAME": None, "MLSTACK_IMAGE_PREFIX": None}
    )
    result = copy.make("init", f"NAME={name}")
    assert result.returncode == 0, result.stderr
    assert f"MLSTACK_IMAGE_PREFIX={name}\n" in (copy.directory / "env/images.env").read_text()
    assert copy.name == name
    copy_mlflow = up(copy)

    own_after = stack_resources(docker_client, own)
    copy_resources = stack_resources(docker_client, copy)
    # The first stack was left alone: the same containers, still running
    assert own_after == before
    for kind, own_values in own_after.items():
        assert own_values and copy_resources[kind], kind
        assert not own_values & copy_resources[kind], kind
    assert copy_resources["volumes"] == {f"{name}_mlflow-data"}
    assert {image.split("/")[0] for image in copy_resources["images"]} == {name}
    for url in (own_mlflow, copy_mlflow):
        assert requests.get(f"{url}/health", timeout=10).text.strip() == "OK"


@pytest.mark.parametrize("name", ["", "My_Project", "-starts-with-a-dash", "ends-", "a b"])
def test_make_init_refuses_a_bad_name_with_one_line_and_changes_nothing(tmp_path, name):
    directory = copy_project(tmp_path / "project")
    images_env = (directory / "env/images.env").read_text()
    result = run(["make", "--no-print-directory", "init", f"NAME={name}"], directory)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "lowercase letters, digits and dashes" in errors[0]
    assert (directory / "env/images.env").read_text() == images_env
    assert not (directory / ".env").exists()
