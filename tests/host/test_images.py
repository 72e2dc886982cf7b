"""The images: the chain's build order, what a request builds, labels, progress lines."""

from __future__ import annotations

import pytest

from stackctl import images
from stackctl.proc import Failure


def test_each_level_builds_after_every_parent():
    order = [name for level in images.levels() for name in level]
    assert order[0] == "base" and order[-1] == "project"
    for name, parents in images.CHAIN.items():
        for parent in parents:
            assert images.level(parent) < images.level(name)
    assert images.levels()[2] == ["mlflow", "jupyter", "bash"]


def test_by_default_the_stack_and_the_project_build_and_the_team_only_in_team_mode():
    stack = ["base", "science", "mlflow", "jupyter", "bash", "project"]
    assert images.wanted([], "compose.yaml") == stack
    assert set(images.wanted([], "compose.yaml:compose.team.yaml")) == {
        *stack,
        "postgres",
        "s3",
    }


def test_the_scheduler_builds_only_with_the_scheduled_jobs_on():
    assert "scheduler" not in images.wanted([], "compose.yaml")
    assert images.wanted([], "compose.yaml", scheduled=True)[-1] == "scheduler"
    assert "scheduler" in images.wanted(["all"], "")


def test_an_image_brings_its_ancestors_and_all_means_every_group():
    assert images.wanted(["mlflow"], "") == ["base", "science", "mlflow"]
    assert images.wanted(["gateway"], "") == ["base", "gateway"]
    assert "project" not in images.wanted(["all"], "")
    assert set(images.wanted(["all"], "")) == set(images.CHAIN) - {"project"}


def test_an_unknown_image_is_refused_with_the_known_ones():
    with pytest.raises(Failure) as refused:
        images.wanted(["scipy"], "")
    assert refused.value.status == 2
    assert str(refused.value) == (
        "unknown image 'scipy'; known images: base science mlflow jupyter bash postgres s3 "
        "project registry gateway scheduler"
    )


def test_groups_are_listed_and_an_unknown_one_refused():
    assert images.group("team") == ("postgres", "s3")
    with pytest.raises(Failure, match="^no image group 'gpu'; groups: stack team swarm schedule$"):
        images.group("gpu")


@pytest.mark.parametrize(
    "origin, label",
    [
        ("https://git.example.invalid/org/repo.git", "https://git.example.invalid/org/repo.git"),
        ("git@git.example.invalid:org/repo.git", "git@git.example.invalid:org/repo.git"),
        # CI checkouts carry a token: never into a label
        (
            "https://ci:s3cret@git.example.invalid/org/repo.git",
            "https://git.example.invalid/org/repo.git",
        ),
        ("ssh://git@host:22/repo", "ssh://host:22/repo"),
        ("/home/ada/mlstack", ""),
        ("../mlstack", ""),
        ("", ""),
    ],
)
def test_the_source_label_has_no_userinfo_and_no_local_path(origin, label):
    assert images.source_url(origin) == label


def test_progress_shows_only_steps_that_run_and_take_time():
    steps = images.Step("mlstack/base:0.1.0", start=0)
    output = [
        "Step 1/3 : FROM debian:trixie-slim",
        " ---> abc",
        "Step 2/3 : RUN apt-get update",
        " ---> Using cache",
        "Step 3/3 : COPY requirements.lock /opt/",
        " ---> Running in 123",
    ]
    shown = [line for line in map(steps.feed, output) if line]
    assert len(shown) == 1
    assert shown[0].startswith("build: mlstack/base:0.1.0 step 3/3: COPY requirements.lock /opt/ (")


def test_the_project_images_get_the_host_users_entry_from_env(tmp_path):
    from stackctl.envfile import EnvFile

    env = EnvFile(tmp_path / ".env")
    assert images.host_user(env) == []
    for key, value in {"MLSTACK_UID": "1001", "MLSTACK_GID": "1002", "MLSTACK_USER": "ada"}.items():
        env.set(key, value)
    assert images.host_user(env) == [
        "--build-arg", "MLSTACK_UID=1001",
        "--build-arg", "MLSTACK_GID=1002",
        "--build-arg", "MLSTACK_USER=ada",
    ]  # fmt: skip
