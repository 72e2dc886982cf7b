"""Taking a newer stack version: a project made with `make init`, with its own edits to every
project-owned file (project-files.txt), merges a later stack commit that changes the images,
compose.yaml, the scripts and the Makefile, as the manual says (remote, fetch, check, merge):
no conflict, every edit intact, and the stack still comes up and trains. The check names a
stack version that would touch a project file."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.helpers import Project, run, unique_name

pytestmark = pytest.mark.tools

# The later stack version's changes: one per kind of stack file
STACK_CHANGES = ("images/project/Dockerfile", "compose.yaml", "scripts/up.sh", "Makefile")
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


def test_a_project_takes_a_newer_stack_version_without_conflicts(
    new_project, built_images, tmp_path
):
    name = unique_name("upgrade")
    project = new_project("upgraded", None, {"COMPOSE_PROJECT_NAME": None})
    # The stack as the project was made from it: the clone's state, committed
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--allow-empty", "-m", "the stack, as cloned")
    # The stack's own repository, which goes on without the project (a copy of the history, as
    # the test's user: git refuses to clone a repository another user owns)
    upstream = shutil.copytree(project.directory, tmp_path / "upstream", symlinks=True)

    # The user's project: make init, then an edit to every project-owned file
    assert project.make("init", f"NAME={name}").returncode == 0
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

    # A later stack version: images, compose.yaml, scripts and the Makefile change upstream
    for relative in STACK_CHANGES:
        (upstream / relative).write_text(
            (upstream / relative).read_text() + "# a newer stack version\n"
        )
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
    up = project.make("up")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    trained = project.compose("run", "--rm", "bash", "python", "train.py", "--n-estimators", "5")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "logged to experiment 'upgraded'" in trained.stdout


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
