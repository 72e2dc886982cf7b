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


def test_an_upgrade_touches_the_project_when_it_changes_anything_under_its_folder():
    changed = ["Makefile", "project/src/pkg/model.py", "project/train.py", "projects/x.py",
               "env/stack.env", "project"]  # fmt: skip
    assert project.touched(changed, project.OWNED) == [
        "project/src/pkg/model.py",
        "project/train.py",
        "project",
    ]


def template(folder):
    """A project folder as the template ships it: one package, its imports, the demo's settings
    and README, and data that is not code."""
    (folder / "src/template_demo").mkdir(parents=True)
    (folder / "src/template_demo/__init__.py").write_text("")
    (folder / "train.py").write_text("from template_demo import data\ntemplate_demo_x = 1\n")
    (folder / "notebooks").mkdir()
    (folder / "notebooks/a.ipynb").write_text('{"source": ["import template_demo.model"]}')
    (folder / "data/raw").mkdir(parents=True)
    (folder / "data/raw/notes.md").write_text("template_demo\n")
    (folder / "project.env").write_text(
        "# the experiment\nMLFLOW_EXPERIMENT_NAME=mlstack-demo\nX=1\n"
    )
    (folder / "README.md").write_text("# mlstack-demo\n\nThe demo.\n")
    return folder


def test_generate_names_the_package_imports_experiment_and_readme(tmp_path):
    folder = template(tmp_path)
    said = project.generate(folder, "churn-model")
    assert [p.name for p in (folder / "src").iterdir()] == ["churn_model"]
    assert (
        folder / "train.py"
    ).read_text() == "from churn_model import data\ntemplate_demo_x = 1\n"
    assert "import churn_model.model" in (folder / "notebooks/a.ipynb").read_text()
    # Data is the project's, never rewritten
    assert (folder / "data/raw/notes.md").read_text() == "template_demo\n"
    assert (folder / "project.env").read_text() == (
        "# the experiment\nMLFLOW_EXPERIMENT_NAME=churn-model\nX=1\n"
    )
    assert (folder / "README.md").read_text().startswith("# churn-model\n")
    assert len(said) == 3
    # Once the project's own, a second init changes nothing of it but the package's name
    (folder / "README.md").write_text("# churn-model\n\nOurs.\n")
    assert project.generate(folder, "churn-model") == []
    assert (folder / "README.md").read_text() == "# churn-model\n\nOurs.\n"


def test_generate_refuses_several_packages_before_changing_anything(tmp_path):
    folder = template(tmp_path)
    (folder / "src/other").mkdir()
    (folder / "src/other/__init__.py").write_text("")
    with pytest.raises(
        Failure, match=r"project/src/ holds 2 packages \(src/other src/template_demo\)"
    ):
        project.generate(folder, "churn-model")
    assert (folder / "src/template_demo").is_dir() and "mlstack-demo" in (
        folder / "project.env"
    ).read_text()


def test_the_old_layout_is_project_files_txt_or_the_default_list(tmp_path):
    (tmp_path / "train.py").write_text("")
    (tmp_path / "project_tests").mkdir()
    (tmp_path / "logs").mkdir()
    assert project.old_layout_paths(tmp_path) == ["train.py", "project_tests", "logs"]
    (tmp_path / "own.py").write_text("")
    (tmp_path / "project-files.txt").write_text("# ours\nown.py\nproject_tests/\nmissing.py\n")
    assert project.old_layout_paths(tmp_path) == ["own.py", "project_tests", "logs"]


@pytest.mark.parametrize(
    "old, new",
    [("src", "project/src"), ("project_tests", "project/tests"),
     ("env/project.env", "project/project.env"), ("data", "project/data")],
)  # fmt: skip
def test_the_move_puts_each_old_path_in_the_project_folder(old, new):
    assert project.moved_to(old) == new


def test_a_second_init_renames_what_the_first_named_and_keeps_the_rest(tmp_path):
    folder = template(tmp_path)
    project.generate(folder, "churn-model")
    (folder / "README.md").write_text("# churn-model\n\nOur notes.\n")
    said = project.generate(folder, "churn-v2")
    assert [p.name for p in (folder / "src").iterdir()] == ["churn_v2"]
    assert "MLFLOW_EXPERIMENT_NAME=churn-v2\n" in (folder / "project.env").read_text()
    assert (folder / "README.md").read_text() == "# churn-v2\n\nOur notes.\n"
    assert len(said) == 3
    # An experiment the user named themselves stays theirs
    (folder / "project.env").write_text("MLFLOW_EXPERIMENT_NAME=my-runs\n")
    project.generate(folder, "churn-v3")
    assert (folder / "project.env").read_text() == "MLFLOW_EXPERIMENT_NAME=my-runs\n"
