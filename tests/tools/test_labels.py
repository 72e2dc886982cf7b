"""No credential leaves .env: a clone whose origin carries a token (as CI checkouts do) puts it
in no image label, build output or `make config`, and a clone's origin never relabels (and so
rebuilds) the stack's shared images."""

from __future__ import annotations

import subprocess

import docker
import pytest
import yaml

from tests.helpers import IMAGE_NAMES, image_ref, project_image_ref, unique_name

pytestmark = pytest.mark.tools

SECRET = "s3cretT0ken"


def test_an_origin_with_a_token_reaches_no_label_and_no_shared_image(
    new_project, built_images, docker_client: docker.DockerClient
):
    before = {name: docker_client.images.get(image_ref(name)).id for name in IMAGE_NAMES}
    project = new_project("labels", unique_name("labels"))
    origin = f"https://ci:{SECRET}@git.example.invalid/team/churn.git"
    git = ["git", "-C", str(project.directory), "remote"]
    subprocess.run([*git, "remove", "origin"], capture_output=True, env=project.env)
    subprocess.run([*git, "add", "origin", origin], check=True, env=project.env)
    built = project.make("build")
    assert built.returncode == 0, built.stderr[-3000:]
    shown = project.make("config")
    assert shown.returncode == 0, shown.stderr[-2000:]
    secrets = [
        line.split("=", 1)[1]
        for line in (project.directory / ".env").read_text().splitlines()
        if line.split("=", 1)[0] in ("JUPYTER_TOKEN", "MLFLOW_ADMIN_PASSWORD", "POSTGRES_PASSWORD")
    ]
    assert secrets and not any(secret in shown.stdout for secret in secrets)
    assert "JUPYTER_TOKEN: masked-secret" in shown.stdout
    assert yaml.safe_load(shown.stdout)["services"]["mlflow"]
    for text in (built.stdout, built.stderr, shown.stdout, shown.stderr):
        assert SECRET not in text
    # The shared images are the same images (no relabel, no rebuild)
    after = {name: docker_client.images.get(image_ref(name)).id for name in IMAGE_NAMES}
    assert after == before
    for name in IMAGE_NAMES:
        labels = docker_client.images.get(image_ref(name)).labels
        assert "org.opencontainers.image.source" not in labels
    for service in ("jupyter", "bash"):
        labels = docker_client.images.get(project_image_ref(project.name, service)).labels
        assert (
            labels["org.opencontainers.image.source"]
            == "https://git.example.invalid/team/churn.git"
        )
        assert not any(SECRET in value for value in labels.values())
