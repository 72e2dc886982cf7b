"""Every project its own environment: two copies of the stack on one machine (two folders, no
`make init`) with different requirements.txt each get their own jupyter and bash images, also
through plain `docker compose run`, on shared stack images that neither rebuilds; removing a
package and `make up` removes it from that project's containers; `make clean` removes the old
project images and says which. Plus `pip install` and a notebook's `%pip install` under a
non-root UID that is not the image's own."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import IMAGE_NAMES, REPO_ROOT, image_ref, project_image_ref, unique_name

pytestmark = pytest.mark.stack

# Small pure-Python packages that no lock of the stack pins (checked below), installed from their
# wheels shipped with the tests, so that no test downloads them: the image builds from the
# project's wheels/, pip and %pip from the project copy as the containers see it (/project)
EXTRA = {"one": "tabulate", "two": "termcolor"}
WHEELS = "/project/.stack-tests/wheels"
WHEELS_HERE = Path(__file__).parent / "data" / "wheels"


def add_requirement(project, package: str) -> str:
    """Add ``package`` to the project as a user adds a wheel of their own: the wheel (shipped with
    the tests) into wheels/, its line in requirements.txt (so the build downloads nothing);
    returns requirements.txt's former text."""
    wheel = next(WHEELS_HERE.glob(f"{package}-*.whl"))
    shutil.copy2(wheel, project.directory / "project/wheels" / wheel.name)
    path = project.directory / "project/requirements.txt"
    before = path.read_text()
    path.write_text(f"{before.rstrip()}\n{package} @ file:///opt/mlstack/wheels/{wheel.name}\n")
    return before


def imports(project, service: str, module: str) -> bool:
    """Does ``import module`` work in a new container of the service, started with plain
    `docker compose run` (no make)?"""
    result = project.compose(
        "run", "--rm", "--no-deps", service, "python", "-c", f"import {module}"
    )
    assert result.returncode == 0 or "ModuleNotFoundError" in result.stderr, result.stderr
    return result.returncode == 0


def test_the_extra_packages_are_in_no_lock_of_the_stack():
    locks = "\n".join(path.read_text() for path in REPO_ROOT.glob("images/*/requirements.lock"))
    for package in EXTRA.values():
        assert not re.search(rf"^{package}==", locks, re.M), package


def test_two_projects_on_one_machine_see_only_their_own_packages(
    new_project, built_images, docker_client
):
    shared = {name: docker_client.images.get(image_ref(name)).id for name in IMAGE_NAMES}
    projects = {key: new_project(key, unique_name(key)) for key in EXTRA}
    for key, project in projects.items():
        add_requirement(project, EXTRA[key])
        result = project.make("build")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        # The stack's shared images were up to date: no step of theirs ran, only the project's
        for name in IMAGE_NAMES:
            assert f"build: {image_ref(name)} step" not in result.stdout, result.stdout

    for key, project in projects.items():
        own, other = EXTRA[key], next(p for k, p in EXTRA.items() if k != key)
        for service in ("bash", "jupyter"):
            image = project_image_ref(project.name, service)
            assert docker_client.images.get(image).labels["mlstack.project"] == project.name
            assert imports(project, service, own), (key, service)
            assert not imports(project, service, other), (key, service)
    # Built once per machine: neither project rebuilt the stack's shared images
    assert {name: docker_client.images.get(image_ref(name)).id for name in IMAGE_NAMES} == shared


def test_removing_a_package_and_make_up_removes_it_and_make_clean_the_old_image(
    new_project, built_images, docker_client
):
    project = new_project("removal", unique_name("removal"))
    original = add_requirement(project, EXTRA["one"])
    assert project.make("up").returncode == 0
    check = ["exec", "-T", "jupyter", "python", "-c", f"import {EXTRA['one']}"]
    assert project.compose(*check).returncode == 0
    old_image = docker_client.images.get(project_image_ref(project.name, "jupyter")).id

    (project.directory / "project/requirements.txt").write_text(original)
    result = project.make("up")
    assert result.returncode == 0, result.stderr[-2000:]
    # make up rebuilt the image and recreated the running container on it
    gone = project.compose(*check)
    assert gone.returncode != 0 and "ModuleNotFoundError" in gone.stderr
    assert not imports(project, "bash", EXTRA["one"])

    result = project.make("clean")
    assert result.returncode == 0, result.stderr
    removed = [line for line in result.stdout.splitlines() if "removed old image" in line]
    assert len(removed) == 2, result.stdout  # the old jupyter and bash images
    # The raw listing: the SDK's list() inspects each image and fails when another test removes
    # one of its own meanwhile
    assert old_image not in {image["Id"] for image in docker_client.api.images(all=True)}
    # The current images stay, and so do the stack's shared ones
    for service in ("jupyter", "bash"):
        docker_client.images.get(project_image_ref(project.name, service))
    for name in IMAGE_NAMES:
        docker_client.images.get(image_ref(name))


def test_pip_install_in_the_runner_works_under_a_uid_other_than_the_images_user(stack):
    # The images' own user is 1000; a developer whose UID is 1000 proves nothing with it
    uid = stack.uid if stack.uid != 1000 else 4243
    result = stack.compose(
        "run",
        "--rm",
        "--no-deps",
        "--user",
        f"{uid}:{uid}",
        "bash",
        "bash",
        "-c",
        f"id -u && pip install --quiet --no-index --find-links {WHEELS} {EXTRA['two']} "
        f"&& python -c 'import {EXTRA['two']}'",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == str(uid)


def test_percent_pip_install_in_a_notebook_kernel_imports_in_the_same_kernel(stack):
    package = EXTRA["one"]
    cells = [
        "import os; print('uid', os.getuid())",
        f"%pip install --quiet --no-index --find-links {WHEELS} {package}",
        f"import {package}; print('imported', {package}.__name__)",
    ]
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "source": code,
                "outputs": [],
                "execution_count": None,
            }
            for code in cells
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = stack.directory / "project/pip-probe.ipynb"
    path.write_text(json.dumps(notebook))
    try:
        # A real kernel of the jupyter container, run by nbclient as the container's user
        result = stack.execute_notebook("pip-probe.ipynb", "--stdout")
    finally:
        path.unlink()
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = "".join(
        "".join(output.get("text", ""))
        for cell in json.loads(result.stdout)["cells"]
        for output in cell["outputs"]
    )
    assert f"uid {stack.uid}" in outputs, outputs
    assert f"imported {package}" in outputs, outputs
    if stack.uid == 1000:
        pytest.skip("the kernel ran as UID 1000, the images' own user: run the tests as another")
