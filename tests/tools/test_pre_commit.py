"""pre-commit: the project's .pre-commit-config.yaml runs black, hadolint, shellcheck, yamllint
and nbstripout from the project's own .venv, passes on the project as it is, and fails (and
fixes what it can) on a badly formatted file or a notebook with outputs; nothing is downloaded.

Each test works in a fresh git repository made from a copy of the project."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, copy_project, run

pytestmark = pytest.mark.tools

VENV = Path(sys.executable).parent.parent
GIT = ["git", "-c", "user.name=mlstack tests", "-c", "user.email=tests@mlstack.invalid"]


class Repo:
    """A git repository made from a copy of the project, with the project's .venv linked in."""

    def __init__(self, directory: Path, hooks_home: Path) -> None:
        self.directory = directory
        # pre-commit's cache (where hook repositories would be cloned) is the test's own
        self.env = os.environ | {"PRE_COMMIT_HOME": str(hooks_home)}
        self.hooks_home = hooks_home

    def git(self, *args: str):
        """Run git in the repository; never raises."""
        return run([*GIT, *args], self.directory, self.env)

    def pre_commit(self, *args: str):
        """Run the .venv's pre-commit in the repository; never raises."""
        return run([str(VENV / "bin" / "pre-commit"), *args], self.directory, self.env)

    def add(self, relative: str, text: str) -> Path:
        """Write a file and stage it."""
        path = self.directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        assert self.git("add", relative).returncode == 0
        return path


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A fresh repository holding the project's files, all committed."""
    repo = Repo(copy_project(tmp_path / "project"), tmp_path / "pre-commit-home")
    assert repo.git("init", "--quiet").returncode == 0
    assert repo.git("add", "--all").returncode == 0
    # The copy is a clone: with no uncommitted changes there is nothing new to commit
    committed = repo.git("commit", "--quiet", "--no-verify", "--allow-empty", "-m", "copy")
    assert committed.returncode == 0, committed.stderr
    # After the commit: the hooks call .venv/bin/<tool>, and the link is no project file
    (repo.directory / ".venv").symlink_to(VENV)
    return repo


def hook_results(output: str) -> dict[str, str]:
    """Each hook's name (as the config spells it, up to its parenthesis) and its result."""
    results = {}
    for line in output.splitlines():
        if line.rstrip().endswith(("Passed", "Failed", "Skipped")) and "..." in line:
            name, result = line.split("...", 1)[0], line.rstrip().rsplit(".", 1)[-1]
            results[name.split(" (")[0].strip()] = result
    return results


def test_pre_commit_passes_on_the_project_without_downloading_any_hook(repo):
    result = repo.pre_commit("run", "--all-files")
    assert result.returncode == 0, result.stdout + result.stderr
    results = hook_results(result.stdout)
    assert set(results) == {"black", "hadolint", "shellcheck", "yamllint", "nbstripout"}
    assert set(results.values()) == {"Passed"}, result.stdout
    # Local hooks only: pre-commit cloned no hook repository into its cache
    assert [p.name for p in repo.hooks_home.iterdir() if p.is_dir()] == []


BAD_FILES = {
    "black": ("bad_format.py", "numbers = {  'one':1,\n'two' : 2 }\n"),
    "shellcheck": ("scripts/bad.sh", "#!/usr/bin/env bash\nrm -rf $1/*\n"),
    "hadolint": ("images/bad/Dockerfile", "FROM debian:trixie-slim\nRUN cd /tmp && ls\n"),
    "yamllint": ("bad.yaml", "key: value\nkey: again\n"),
}


@pytest.mark.parametrize("hook", BAD_FILES)
def test_pre_commit_fails_on_a_file_its_hook_rejects(repo, hook):
    relative, text = BAD_FILES[hook]
    path = repo.add(relative, text)
    if relative.endswith(".sh"):
        path.chmod(0o755)
    result = repo.pre_commit("run", "--all-files")
    assert result.returncode != 0, result.stdout
    failed = {name for name, value in hook_results(result.stdout).items() if value == "Failed"}
    assert failed == {hook}, result.stdout


def test_pre_commit_reformats_a_badly_formatted_python_file(repo):
    path = repo.add(*BAD_FILES["black"])
    assert repo.pre_commit("run", "--all-files").returncode != 0
    assert path.read_text() == 'numbers = {"one": 1, "two": 2}\n'
    # Once the fix is staged, the commit goes through
    repo.git("add", path.name)
    assert repo.pre_commit("run", "--all-files").returncode == 0


def test_pre_commit_strips_the_outputs_of_a_notebook(repo):
    notebook = json.loads((REPO_ROOT / "project/notebooks/explore_wine.ipynb").read_text())
    code = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    code["execution_count"] = 7
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["178 rows\n"]}]
    path = repo.add("notebooks/with_outputs.ipynb", json.dumps(notebook, indent=1) + "\n")
    result = repo.pre_commit("run", "--all-files")
    assert result.returncode != 0, result.stdout
    assert hook_results(result.stdout)["nbstripout"] == "Failed"
    stripped = json.loads(path.read_text())
    code_cells = [cell for cell in stripped["cells"] if cell["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code_cells)
    # The cells themselves are kept, ids included
    assert [c["id"] for c in stripped["cells"]] == [c["id"] for c in notebook["cells"]]


def test_make_hooks_installs_a_git_hook_that_blocks_a_bad_commit(repo):
    hooks = repo.directory / ".git" / "hooks" / "pre-commit"
    # -o: the linked .venv is the suite's own and up to date; make must not rebuild it
    result = run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "hooks"],
        repo.directory,
        repo.env,
    )
    assert result.returncode == 0, result.stderr
    assert hooks.exists()
    repo.add(*BAD_FILES["black"])
    commit = repo.git("commit", "--quiet", "-m", "badly formatted")
    assert commit.returncode != 0
    assert "black" in commit.stdout + commit.stderr
