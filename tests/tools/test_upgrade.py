"""Taking a newer stack version: a project made with `make init`, with its own edits to every
project-owned file (project-files.txt), merges a later stack commit that changes the images,
the stack's package (mlstack), compose.yaml, the scripts and the Makefile, as the manual says
(remote, fetch, check, merge): no conflict, every edit intact, the stack still comes up and
trains, and its jobs and notebooks import the new mlstack. The check names a stack version that
would touch a project file."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import tarfile

import pytest

from tests.helpers import Project, image_ref, run, unique_name

pytestmark = pytest.mark.tools

# The later stack version's changes: one per kind of stack file
STACK_CHANGES = ("images/project/Dockerfile", "compose.yaml", "scripts/stackctl/cli.py", "Makefile")
# The stack's package, as the images install it
MLSTACK_INIT = "images/science/mlstack/src/mlstack/__init__.py"
IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def git(project: Project, *args: str, cwd=None):
    """Run git in the project (or ``cwd``) with a committer identity; fails the test on error."""
    result = run(["git", *args], cwd or project.directory, project.env | IDENTITY)
    assert result.returncode == 0, f"git {args}: {result.stdout}{result.stderr}"
    return result


def edit(path, mark: str) -> None:
    """A project's own change to a file of its: a comment (or a notebook cell) with ``mark``."""
    if path.suffix == ".ipynb":
        notebook = json.loads(path.read_text())
        notebook["cells"].append(
            {"cell_type": "markdown", "id": "project-edit", "metadata": {}, "source": [mark]}
        )
        path.write_text(json.dumps(notebook, indent=1) + "\n")
    else:
        path.write_text(path.read_text() + f"# {mark}\n")


@pytest.fixture
def upgrade_prefix(docker_client, tmp_path):
    """An image prefix for a newer stack version's images, whose images are removed after the
    test, children first (newest first), once the project (set up after this) is gone.

    Its base takes the CA certificates of the shared base (EXTRA_CA_CERTS, when the tests run
    without it), so that its layers come from the build cache: nothing is downloaded."""
    prefix = f"mlstack-upgrade-{secrets.token_hex(4)}"
    saved = os.environ.get("EXTRA_CA_CERTS")
    if not saved:
        certs = tmp_path / "ca-certificates"
        certs.mkdir()
        holder = docker_client.containers.create(image_ref("base"), ["true"])
        try:
            stream, _ = holder.get_archive("/usr/local/share/ca-certificates/.")
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                tar.extractall(certs, filter="data")
        finally:
            holder.remove(force=True)
        os.environ["EXTRA_CA_CERTS"] = str(certs)
    yield prefix
    if not saved:
        os.environ.pop("EXTRA_CA_CERTS", None)
    images = sorted(docker_client.images.list(), key=lambda i: i.attrs["Created"], reverse=True)
    for image in images:
        if any(tag.startswith(f"{prefix}/") for tag in image.tags):
            docker_client.images.remove(image.id, force=True)


def test_a_project_takes_a_newer_stack_version_without_conflicts(
    upgrade_prefix, new_project, built_images, tmp_path
):
    name = unique_name("upgrade")
    project = new_project("upgraded", None, {"COMPOSE_PROJECT_NAME": None})
    # The stack as the project was made from it: the clone's state, committed
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--allow-empty", "-m", "the stack, as cloned")
    # The stack's own repository, which goes on without the project (a copy of the history, as
    # the test's user: git refuses to clone a repository another user owns)
    upstream = shutil.copytree(project.directory, tmp_path / "upstream", symlinks=True)

    # The user's project: make init (its README becomes the project's), then an edit to every
    # project-owned file
    assert project.make("init", f"NAME={name}").returncode == 0
    assert (project.directory / "README.md").read_text().startswith(f"# {name}\n")
    package = name.replace("-", "_")
    assert (project.directory / "src" / package / "data.py").exists()
    env_file = project.directory / "env/project.env"
    env_file.write_text(
        re.sub(
            r"^MLFLOW_EXPERIMENT_NAME=.*$",
            "MLFLOW_EXPERIMENT_NAME=upgraded",
            env_file.read_text(),
            flags=re.M,
        )
    )
    git(project, "add", "--all")
    owned = [
        line.rstrip("/")
        for line in (project.directory / "project-files.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    files = git(project, "ls-files", "--", *owned).stdout.split()
    assert {"train.py", "predict.py", "evaluate.py", "requirements.txt"} <= set(files)
    for relative in files:
        if not relative.endswith(".gitkeep"):
            edit(project.directory / relative, f"edited by project {name}")
    git(project, "commit", "--quiet", "--all", "-m", "the project's own work")
    edited = {relative: (project.directory / relative).read_bytes() for relative in files}

    # A later stack version: images, compose.yaml, scripts and the Makefile change upstream, and
    # so does the stack's package. Its images get a prefix of their own, so that the session's
    # shared images stay as they are
    for relative in STACK_CHANGES:
        (upstream / relative).write_text(
            (upstream / relative).read_text() + "# a newer stack version\n"
        )
    readme = upstream / "README.md"
    readme.write_text(readme.read_text() + "\nA newer stack version's front page.\n")
    mark = f"upgraded-{secrets.token_hex(4)}"
    package = upstream / MLSTACK_INIT
    package.write_text(package.read_text() + f"\nUPGRADE_MARK = {mark!r}\n")
    images_env = upstream / "env/images.env"
    images_env.write_text(
        re.sub(r"^MLSTACK_IMAGE_PREFIX=.*$", f"MLSTACK_IMAGE_PREFIX={upgrade_prefix}",
               images_env.read_text(), flags=re.M)
    )  # fmt: skip
    git(project, "commit", "--quiet", "--all", "-m", "stack 0.2", cwd=upstream)
    git(project, "tag", "v0.2.0", cwd=upstream)

    # The manual's steps (docs/operations.md)
    git(project, "remote", "add", "mlstack", str(upstream))
    git(project, "fetch", "--quiet", "mlstack", "--tags")
    checked = project.make("upgrade-check", "REF=v0.2.0")
    assert checked.returncode == 0, checked.stderr
    assert "none of the project's" in checked.stdout
    merged = run(["git", "merge", "--no-edit", "v0.2.0"], project.directory, project.env | IDENTITY)
    assert merged.returncode == 0 and "CONFLICT" not in merged.stdout, merged.stdout + merged.stderr

    assert {r: (project.directory / r).read_bytes() for r in files} == edited
    for relative in STACK_CHANGES:
        assert (project.directory / relative).read_text().endswith("# a newer stack version\n")
    # The project's README stays its own although the stack's front page changed
    assert (project.directory / "README.md").read_text().startswith(f"# {name}\n")
    up = project.make("up")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    trained = project.compose("run", "--rm", "bash", "python", "train.py", "--n-estimators", "5")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "logged to experiment 'upgraded'" in trained.stdout
    # Jobs and the notebooks' kernels (the jupyter container's Python) import the new package
    probe = ["python", "-c", "import mlstack; print(mlstack.UPGRADE_MARK)"]
    job = project.compose("run", "--rm", "--no-deps", "bash", *probe)
    assert job.stdout.strip().splitlines()[-1:] == [mark], job.stdout + job.stderr
    kernel = project.compose("exec", "-T", "jupyter", *probe)
    assert kernel.stdout.strip() == mark, kernel.stdout + kernel.stderr


def test_the_upgrade_check_names_a_stack_version_that_changes_a_project_file(tmp_path, new_project):
    project = new_project("checked-upgrade", unique_name("upgrade-check"))
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--allow-empty", "-m", "the stack, as cloned")
    git(project, "branch", "newer-stack")
    git(project, "checkout", "--quiet", "newer-stack")
    for relative in ("train.py", "compose.yaml"):
        (project.directory / relative).write_text(
            (project.directory / relative).read_text() + "# changed by the stack\n"
        )
    git(project, "commit", "--quiet", "--all", "-m", "a stack version that edits train.py")
    git(project, "checkout", "--quiet", "-")

    result = project.make("upgrade-check", "REF=newer-stack")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "train.py" in errors[0] and "compose.yaml" not in errors[0]
    unknown = project.make("upgrade-check", "REF=no-such-version")
    assert unknown.returncode != 0 and "git fetch mlstack --tags" in unknown.stderr
