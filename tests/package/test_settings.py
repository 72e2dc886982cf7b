"""mlstack.settings: where the project folder and its settings are found, and numbers."""

from __future__ import annotations

import os

import pytest

from mlstack import settings
from mlstack.settings import JobError


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A stack checkout: env/stack.env beside the project folder, which holds project.env and
    the runtime URLs; the working directory a notebook folder of the project."""
    (tmp_path / "env").mkdir()
    (tmp_path / "env/stack.env").write_text("FROM_STACK=stack\nBOTH=stack\n")
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / ".mlstack").mkdir()
    (project / "project.env").write_text("FROM_PROJECT=project\nBOTH=project\n")
    (project / ".mlstack/urls.env").write_text("MLSTACK_MLFLOW_URL=http://127.0.0.1:1234\n")
    monkeypatch.chdir(project / "notebooks")
    monkeypatch.delenv("MLSTACK_PROJECT_DIR", raising=False)
    for name in ("FROM_STACK", "FROM_PROJECT", "BOTH", "MLSTACK_MLFLOW_URL"):
        monkeypatch.delenv(name, raising=False)
    return project


def test_the_project_folder_is_the_nearest_with_project_env(checkout):
    assert settings.project_dir() == checkout


def test_the_setting_names_the_project_folder_when_set(checkout, monkeypatch, tmp_path):
    monkeypatch.setenv("MLSTACK_PROJECT_DIR", str(tmp_path / "elsewhere"))
    assert settings.project_dir() == tmp_path / "elsewhere"


def test_without_project_env_above_it_is_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLSTACK_PROJECT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert settings.project_dir() == tmp_path


def test_settings_come_from_the_stack_then_the_project_then_the_urls(checkout, monkeypatch):
    assert settings.settings_files() == (
        checkout.parent / "env/stack.env",
        checkout / "project.env",
        checkout / ".mlstack/urls.env",
    )
    monkeypatch.setenv("FROM_PROJECT", "the user's shell")
    settings.load_settings()
    assert os.environ["FROM_STACK"] == "stack"
    # The first file wins over a later one; the environment wins over every file
    assert os.environ["BOTH"] == "stack"
    assert os.environ["FROM_PROJECT"] == "the user's shell"
    assert os.environ["MLSTACK_MLFLOW_URL"] == "http://127.0.0.1:1234"


@pytest.mark.parametrize(
    "value, default, expected",
    [("0.05", None, 0.05), ("", 0.02, 0.02), (None, 1.0, 1.0), ("3", None, 3.0)],
)
def test_a_number_setting_is_its_value_or_the_default(monkeypatch, value, default, expected):
    if value is None:
        monkeypatch.delenv("THRESHOLD", raising=False)
    else:
        monkeypatch.setenv("THRESHOLD", value)
    assert settings.number_setting("THRESHOLD", default) == expected


def test_a_threshold_that_is_unset_or_not_a_number_is_one_line_naming_the_file(monkeypatch):
    monkeypatch.delenv("THRESHOLD", raising=False)
    with pytest.raises(JobError, match=r"^THRESHOLD is not set; set it in project.env$"):
        settings.number_setting("THRESHOLD")
    monkeypatch.setenv("THRESHOLD", "five")
    with pytest.raises(JobError, match=r"^THRESHOLD=five is not a number; fix it in project.env$"):
        settings.number_setting("THRESHOLD")
