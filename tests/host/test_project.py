"""make init's name rules and renaming; make upgrade-check's decision."""

from __future__ import annotations

import pytest

from stackctl import project
from stackctl.proc import Failure


@pytest.mark.parametrize("name, package", [("churn-model", "churn_model"), ("m2", "m2")])
def test_a_valid_name_gives_its_package(name, package):
    assert project.package_for(name) == package


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "no project name given; run 'make init NAME=<name>' (lowercase letters"),
        ("Churn", "'Churn' is not a valid project name; use lowercase letters"),
        ("churn-", "'churn-' is not a valid project name"),
        ("churn_model", "'churn_model' is not a valid project name"),
        (
            "2churn",
            "'2churn' starts with a digit, which the name of its Python package cannot; "
            "start it with a letter, for example 'p2churn'",
        ),
    ],
)
def test_a_bad_name_is_refused_in_one_line_with_the_rule(name, message):
    with pytest.raises(Failure) as refused:
        project.package_for(name)
    assert refused.value.status == 2 and str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_renaming_replaces_whole_words_only():
    text = "from wine_demo import data\nwine_demo_extra = 1\nimport wine_demo.model\n"
    assert project.rename_in(text, "wine_demo", "churn") == (
        "from churn import data\nwine_demo_extra = 1\nimport churn.model\n"
    )


def test_packages_are_the_folders_with_an_init(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "__init__.py").write_text("")
    (tmp_path / "data").mkdir()
    assert project.packages(tmp_path) == ["src/a"]
    assert project.packages(tmp_path / "missing") == []


def test_an_upgrade_touches_the_project_when_it_changes_an_owned_file_or_folder():
    owned = ["src", "train.py", "env/project.env"]
    changed = ["Makefile", "src/pkg/model.py", "train.py", "src2/x.py", "env/stack.env"]
    assert project.touched(changed, owned) == ["src/pkg/model.py", "train.py"]
