"""The stack's tests run on a project of their own (tests/fixture), never on the user's: the
copy every stack test drives holds the fixture's project files, and no test names the user's
package. So a project whose train.py, package and notebooks are its own still passes the
stack's suite. And the manual's console blocks are each run by a test or marked as examples."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import (
    EXAMPLE_MARK,
    FIXTURE,
    PAGES_RUN_BY_TESTS,
    REPO_ROOT,
    console_blocks,
    console_commands,
    copy_project,
    project_files,
)


def files_under(path: Path) -> dict[str, bytes]:
    """A file's bytes, or every file's under a folder (by relative path), no caches."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_the_copy_the_tests_drive_holds_the_fixture_project_not_the_users(tmp_path):
    copy = copy_project(tmp_path / "copy")
    for relative in project_files():
        expected = files_under(FIXTURE / relative) if (FIXTURE / relative).exists() else {}
        found = files_under(copy / relative) if (copy / relative).exists() else {}
        assert found == expected, f"{relative} of the copy is not the fixture's"
    # The user's package is gone from the copy; the fixture's is there
    assert sorted(p.name for p in (copy / "src").iterdir()) == ["fixture_project"]


def test_no_stack_test_names_the_users_package():
    packages = [p.name for p in (REPO_ROOT / "src").glob("*") if (p / "__init__.py").exists()]
    assert packages, "the project has no package under src/"
    fixture = FIXTURE.resolve()
    for test in (REPO_ROOT / "tests").rglob("*.py"):
        if fixture in test.resolve().parents:
            continue
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
