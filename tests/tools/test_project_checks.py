"""`make check`, the project's own checks: black --check and the project's tests, run with the
runner image's tools in seconds; it passes on a fresh clone and fails on a failing project test
or on badly formatted project code."""

from __future__ import annotations

import time

import pytest

from tests.helpers import unique_name

pytestmark = pytest.mark.tools


def test_make_check_passes_on_a_fresh_clone_and_fails_on_a_failing_test_or_bad_format(
    new_project, built_images
):
    project = new_project("checked", unique_name("check"))
    # The project's images first, so that the timing below is the checks' own
    assert project.make("build", "IMAGES=project").returncode == 0
    started = time.monotonic()
    passed = project.make("check")
    seconds = time.monotonic() - started
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    assert "passed" in passed.stdout
    print(f"make check on a fresh clone: {seconds:.1f} s")

    failing = project.directory / "project/tests/test_failing.py"
    failing.write_text("def test_the_project_is_broken():\n    assert 1 + 1 == 3\n")
    result = project.make("check")
    assert result.returncode != 0
    assert "test_the_project_is_broken" in result.stdout + result.stderr
    failing.unlink()

    package = next(project.directory.glob("project/src/*/__init__.py")).parent
    (package / "badly_formatted.py").write_text("numbers = { 'one':1,'two' :2 }\n")
    result = project.make("check")
    assert result.returncode != 0
    assert "would reformat" in result.stderr and "badly_formatted.py" in result.stderr
