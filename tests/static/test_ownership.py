"""Who owns what shows in the folder a file sits in: the user's project is project/ (the
template's demo in the stack's own repository), everything else is the stack's. The stack reads
the project's folder only through its documented interface; no list of project files and no merge
driver remain. The stack's tests run on a project generated from the template by make init's own
code, never on a copy kept by hand. And the manual's console blocks are each run by a test or
marked as examples."""

from __future__ import annotations

import re
import subprocess

from tests.helpers import (
    EXAMPLE_MARK,
    PAGES_RUN_BY_TESTS,
    REPO_ROOT,
    TEST_PROJECT,
    console_blocks,
    console_commands,
    copy_project,
)

# What the stack reads or writes in the project's folder, and nothing else of it: the project's
# settings, its packages (the project image's inputs), its code's folder (on the Python path),
# its tests and their settings (make check), the runtime files the stack writes for the containers
PROJECT_INTERFACE = {
    "project",
    "project/project.env",
    "project/requirements.txt",
    "project/wheels",
    "project/src",
    "project/tests",
    "project/pyproject.toml",
    "project/.mlstack",
    # The scheduled jobs (make up SCHEDULE=1): the project's, read by the scheduler's worker
    "project/schedules.toml",
}
# make init and make move-project, which make and move a project's files
PROJECT_TOOL = "scripts/stackctl/project.py"
# Where a project's files sat before the project folder (project-files.txt, before mlstack 0.2)
OLD_PROJECT_PATHS = ("src/", "notebooks/", "project_tests/", "data/", "wheels/")
OLD_PROJECT_FILES = ("train.py", "predict.py", "evaluate.py", "sweep.py", "monitor.py",
                     "requirements.txt", "env/project.env", "project-files.txt")  # fmt: skip


def tracked() -> list[str]:
    """The repository's tracked files, relative to its root."""
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return listed.stdout.splitlines()


def test_no_file_outside_the_project_folder_is_the_users():
    files = tracked()
    misplaced = [
        path for path in files if path in OLD_PROJECT_FILES or path.startswith(OLD_PROJECT_PATHS)
    ]
    assert not misplaced, f"project files outside project/: {misplaced}"
    # The stack's files at the root are its own configuration, never a job or notebook
    assert not [p for p in files if "/" not in p and p.endswith((".py", ".ipynb"))]
    # No merge driver keeps a file of two owners
    assert not [p for p in files if p.endswith(".gitattributes")]
    assert "merge=ours" not in (REPO_ROOT / "scripts/stackctl/project.py").read_text()


def test_the_stack_reads_the_project_folder_only_through_its_interface():
    stack = [
        path
        for path in tracked()
        if not path.startswith(("project/", "tests/", "docs/", "bench/"))
        and not path.endswith(".md")
        and path != PROJECT_TOOL
    ]
    used = set()
    for path in stack:
        # Comments may name any file; code and settings only the interface
        lines = (REPO_ROOT / path).read_text(errors="replace").splitlines()
        text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
        for found in re.findall(r"(?<![\w./-])(project(?:/[\w.-]+)?)", text):
            if (REPO_ROOT / found).exists() or found == "project/.mlstack":
                used.add((found, path))
    outside = sorted(f"{path}: {found}" for found, path in used if found not in PROJECT_INTERFACE)
    assert not outside, f"stack files reading the project's files: {outside}"


def test_the_copy_the_tests_drive_holds_a_project_generated_from_the_template(tmp_path):
    copy = copy_project(tmp_path / "copy")
    package = TEST_PROJECT.replace("-", "_")
    assert sorted(p.name for p in (copy / "project/src").iterdir()) == [package]
    assert f"MLFLOW_EXPERIMENT_NAME={TEST_PROJECT}\n" in (copy / "project/project.env").read_text()
    assert (copy / "project/README.md").read_text().startswith(f"# {TEST_PROJECT}\n")
    # The template's package name is nowhere left in the generated project's code
    template = [p.name for p in (REPO_ROOT / "project/src").iterdir() if p.is_dir()]
    for path in (copy / "project").rglob("*.py"):
        assert not re.search(rf"\b{template[0]}\b", path.read_text()), path
    # Outside project/, the copy is the repository
    for path in tracked():
        if not path.startswith("project/") and (REPO_ROOT / path).is_file():
            assert (copy / path).read_bytes() == (REPO_ROOT / path).read_bytes(), path


def test_no_stack_test_names_the_templates_package():
    packages = [
        p.name for p in (REPO_ROOT / "project/src").glob("*") if (p / "__init__.py").exists()
    ]
    assert packages, "the project has no package under project/src/"
    for test in (REPO_ROOT / "tests").rglob("*.py"):
        text = test.read_text()
        # An import of it, or its name as a string (a module path, a task's __import__)
        named = [
            package
            for package in packages
            if re.search(rf"(?:import|from)\s+{package}\b|['\"]{package}[.'\"]", text)
        ]
        assert not named, f"{test.relative_to(REPO_ROOT)} names the project's package {named}"


def test_every_console_block_of_the_manual_is_run_by_a_test_or_marked_as_an_example():
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    unmarked = []
    for page in pages:
        relative = str(page.relative_to(REPO_ROOT))
        for example, commands in console_blocks(page):
            if not example and relative not in PAGES_RUN_BY_TESTS:
                unmarked.append(f"{relative}: {commands[:1]}")
    assert (
        not unmarked
    ), f"console blocks neither run by a test nor marked {EXAMPLE_MARK}: {unmarked}"
    # The pages said to be run are run by the test named, which reads them
    for relative, test in PAGES_RUN_BY_TESTS.items():
        assert console_commands(REPO_ROOT / relative), f"{relative} has no command to run"
        assert (
            "PAGES_RUN_BY_TESTS" in (REPO_ROOT / test).read_text()
            or relative in (REPO_ROOT / test).read_text()
        ), f"{test} does not run {relative}"
