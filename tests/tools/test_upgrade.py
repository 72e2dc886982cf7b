"""Taking a newer stack version. A project laid out before the project folder (its files at
the root, project-files.txt), with its own edits to every file of its and untracked data, takes
the stack version that moved them with the manual's one step (make move-project): every file
lands in project/ byte for byte, the stack's files are the new version's, its MLflow run is
still there, the stack comes up and trains, its jobs and notebooks import the new mlstack; the
next stack version then merges with plain git, nothing under project/ changed. The check names
a stack version that would touch the project's folder."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import sys
import tarfile

import pytest

from mlflow import MlflowClient

from tests.helpers import REPO_ROOT, Project, console_blocks, image_ref, run, unique_name

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from stackctl.project import OLD_LAYOUT, moved_to  # noqa: E402

pytestmark = pytest.mark.tools

# The later stack version's changes: one per kind of stack file
STACK_CHANGES = ("images/project/Dockerfile", "compose.yaml", "scripts/stackctl/cli.py", "Makefile")
# The stack's package, as the images install it
MLSTACK_INIT = "images/project/mlstack/src/mlstack/__init__.py"
# The manual's page with the upgrade steps
OPERATIONS = REPO_ROOT / "docs" / "operations.md"
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


def old_layout(directory, name: str) -> None:
    """Lay a project copy out as before mlstack 0.2, as make init left it then: the project's
    files at the repository's root (make move-project's moves reversed), listed in
    project-files.txt, its own README at the root, its data ignored by the root's .gitignore."""
    for path in OLD_LAYOUT:
        source = directory / moved_to(path)
        if source.exists():
            (directory / path).parent.mkdir(parents=True, exist_ok=True)
            source.rename(directory / path)
    shutil.rmtree(directory / "project")
    (directory / "project-files.txt").write_text(
        "# The project's files\n" + "".join(f"{path}\n" for path in OLD_LAYOUT)
    )
    (directory / "README.md").write_text(f"# {name}\n\nA project on mlstack, before 0.2.\n")
    with open(directory / ".gitignore", "a") as ignore:
        ignore.write("data/*/*\n!data/*/.gitkeep\nlogs/\n")


def seed_run(project) -> tuple[str, str]:
    """A run in the project's MLflow store, logged from the host with MLflow's client through
    the tracking server alone (compose up mlflow). Returns the server's URL and the run's ID."""
    assert project.make(".env").returncode == 0
    up = project.compose("up", "--detach", "--wait", "mlflow")
    assert up.returncode == 0, up.stderr
    port = project.compose("port", "mlflow", "5000").stdout.strip().rsplit(":", 1)[1]
    url = f"http://127.0.0.1:{port}"
    client = MlflowClient(url)
    experiment = client.create_experiment("before-the-move")
    run_id = client.create_run(experiment).info.run_id
    client.log_param(run_id, "seeded", "yes")
    client.set_terminated(run_id)
    return url, run_id


def test_a_project_laid_out_before_the_move_moves_and_takes_newer_stack_versions(
    upgrade_prefix, new_project, built_images, test_uid, tmp_path
):
    name = unique_name("upgrade")
    project = new_project("upgraded", name)
    # Its MLflow data, which the move must leave as it is
    url, seeded = seed_run(project)
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--allow-empty", "-m", "the stack, as cloned")
    cloned = git(project, "rev-parse", "HEAD").stdout.strip()
    # The stack as such a project was made from it: the project's files at the root
    old_layout(project.directory, name)
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "the stack before 0.2")
    # The stack's own repository, which goes on without the project (a copy of the history, as
    # the test's user: git refuses to clone a repository another user owns)
    upstream = shutil.copytree(project.directory, tmp_path / "upstream", symlinks=True)

    # The user's own work on every file of theirs, and data that git does not track
    env_file = project.directory / "env/project.env"
    env_file.write_text(
        re.sub(r"^MLFLOW_EXPERIMENT_NAME=.*$", "MLFLOW_EXPERIMENT_NAME=upgraded",
               env_file.read_text(), flags=re.M)
    )  # fmt: skip
    files = git(project, "ls-files", "--", *OLD_LAYOUT).stdout.split()
    assert {"train.py", "src/fixture_project/data.py", "env/project.env"} <= set(files)
    for relative in files:
        if not relative.endswith(".gitkeep"):
            edit(project.directory / relative, f"edited by project {name}")
    git(project, "commit", "--quiet", "--all", "-m", "the project's own work")
    data = project.directory / "data/raw/measurements.csv"
    data.write_bytes(secrets.token_bytes(4096))
    edited = {relative: (project.directory / relative).read_bytes() for relative in files}
    edited["data/raw/measurements.csv"] = data.read_bytes()

    # A later stack version, with the project folder: its images, compose.yaml, scripts and the
    # Makefile change, and so does the stack's package. Its images get a prefix of their own, so
    # that the session's shared images stay as they are
    git(project, "read-tree", "-u", "--reset", cloned, cwd=upstream)
    for relative in STACK_CHANGES:
        (upstream / relative).write_text(
            (upstream / relative).read_text() + "# a newer stack version\n"
        )
    mark = f"upgraded-{secrets.token_hex(4)}"
    package = upstream / MLSTACK_INIT
    package.write_text(package.read_text() + f"\nUPGRADE_MARK = {mark!r}\n")
    images_env = upstream / "env/images.env"
    images_env.write_text(
        re.sub(r"^MLSTACK_IMAGE_PREFIX=.*$", f"MLSTACK_IMAGE_PREFIX={upgrade_prefix}",
               images_env.read_text(), flags=re.M)
    )  # fmt: skip
    git(project, "add", "--all", cwd=upstream)
    git(project, "commit", "--quiet", "-m", "stack 0.2", cwd=upstream)
    git(project, "tag", "v0.2.0", cwd=upstream)

    # The manual's one step (docs/operations.md): the new version's tools, then the move
    git(project, "remote", "add", "mlstack", str(upstream))
    git(project, "fetch", "--quiet", "mlstack", "--tags")
    steps = [c for _, block in console_blocks(OPERATIONS) for c in block]
    commands = [c for c in steps if "move-project" in c or c.endswith("-- scripts/stackctl")]
    assert len(commands) == 2, commands
    for command in commands:
        moved = run(["sh", "-c", command], project.directory, project.env | IDENTITY)
        assert moved.returncode == 0, command + moved.stdout + moved.stderr

    for relative, content in edited.items():
        assert (project.directory / moved_to_file(relative)).read_bytes() == content, relative
    assert not [p for p in OLD_LAYOUT if (project.directory / p).exists()]
    assert not (project.directory / "project-files.txt").exists()
    assert (project.directory / "project/README.md").read_text().startswith(f"# {name}\n")
    # Outside project/, the stack is exactly the new version; the merge is recorded
    stack_diff = git(project, "diff", "--name-only", "v0.2.0", "HEAD", "--", ":!project")
    assert stack_diff.stdout == ""
    git(project, "merge-base", "--is-ancestor", "v0.2.0", "HEAD")
    assert git(project, "status", "--porcelain").stdout == ""
    again = project.make("move-project", "REF=v0.2.0")
    assert again.returncode == 0 and "nothing to move" in again.stdout, again.stderr

    if os.getuid() == 0:
        run(["chown", "-R", f"{test_uid}:{test_uid}", str(project.directory)])
    up = project.make("up")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    trained = project.compose("run", "--rm", "bash", "python", "train.py", "--n-estimators", "5")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "logged to experiment 'upgraded'" in trained.stdout
    # The run from before the move is there, as the host's client sees it
    assert MlflowClient(url).get_run(seeded).data.params == {"seeded": "yes"}
    # Jobs and the notebooks' kernels (the jupyter container's Python) import the new package
    probe = ["python", "-c", "import mlstack; print(mlstack.UPGRADE_MARK)"]
    job = project.compose("run", "--rm", "--no-deps", "bash", *probe)
    assert job.stdout.strip().splitlines()[-1:] == [mark], job.stdout + job.stderr
    kernel = project.compose("exec", "-T", "jupyter", *probe)
    assert kernel.stdout.strip() == mark, kernel.stdout + kernel.stderr

    # The next stack version merges as the manual says, touching nothing under project/
    for relative in ("Makefile", "README.md"):
        (upstream / relative).write_text((upstream / relative).read_text() + "\n# 0.3\n")
    git(project, "commit", "--quiet", "--all", "-m", "stack 0.3", cwd=upstream)
    git(project, "tag", "v0.3.0", cwd=upstream)
    git(project, "fetch", "--quiet", "mlstack", "--tags")
    checked = project.make("upgrade-check", "REF=v0.3.0")
    assert checked.returncode == 0 and "nothing under project/" in checked.stdout, checked.stderr
    before = {p: p.read_bytes() for p in (project.directory / "project").rglob("*") if p.is_file()}
    merged = run(["git", "merge", "--no-edit", "v0.3.0"], project.directory, project.env | IDENTITY)
    assert merged.returncode == 0 and "CONFLICT" not in merged.stdout, merged.stdout + merged.stderr
    assert (project.directory / "Makefile").read_text().endswith("\n# 0.3\n")
    after = {p: p.read_bytes() for p in (project.directory / "project").rglob("*") if p.is_file()}
    assert after == before


def moved_to_file(relative: str) -> str:
    """Where make move-project puts a file of the old layout (under one of its paths)."""
    for path in OLD_LAYOUT:
        if relative == path or relative.startswith(path + "/"):
            return moved_to(path) + relative[len(path) :]
    raise AssertionError(f"{relative} is not a project file of the old layout")


def test_the_upgrade_check_names_a_stack_version_that_changes_a_project_file(tmp_path, new_project):
    project = new_project("checked-upgrade", unique_name("upgrade-check"))
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--allow-empty", "-m", "the stack, as cloned")
    git(project, "branch", "newer-stack")
    git(project, "checkout", "--quiet", "newer-stack")
    for relative in ("project/train.py", "compose.yaml"):
        (project.directory / relative).write_text(
            (project.directory / relative).read_text() + "# changed by the stack\n"
        )
    git(project, "commit", "--quiet", "--all", "-m", "a stack version that edits train.py")
    git(project, "checkout", "--quiet", "-")

    result = project.make("upgrade-check", "REF=newer-stack")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "project/train.py" in errors[0] and "compose.yaml" not in errors[0]
    unknown = project.make("upgrade-check", "REF=no-such-version")
    assert unknown.returncode != 0 and "git fetch mlstack --tags" in unknown.stderr
