""".env: read, complete and repair, write (mode 600), keeping every value already there."""

from __future__ import annotations

import os
import stat

import pytest

from stackctl import envfile
from stackctl.envfile import SECRETS, EnvFile, complete, parse, project_name_from
from stackctl.proc import Failure

USER = {"MLSTACK_UID": "1001", "MLSTACK_GID": "1001", "MLSTACK_USER": "ada"}


def completed(tmp_path, text: str | None = None, **environ: str) -> tuple[EnvFile, list[str]]:
    path = tmp_path / ".env"
    if text is not None:
        path.write_text(text)
    env = EnvFile(path)
    said = complete(env, {**USER, **environ}, "My Project")
    return env, said


def test_the_last_line_of_a_key_wins_and_other_lines_are_skipped():
    text = "# a comment\nA=1\nnot a setting\nB=x=y\nA=2\n export C=3\n"
    assert parse(text) == {"A": "2", "B": "x=y"}


def test_a_new_env_gets_every_setting_and_a_distinct_random_secret_each(tmp_path):
    env, said = completed(tmp_path)
    assert env.get("COMPOSE_PROJECT_NAME") == "my-project"
    assert (env.get("MLSTACK_UID"), env.get("MLSTACK_GID"), env.get("MLSTACK_USER")) == (
        "1001",
        "1001",
        "ada",
    )
    assert env.get("MLSTACK_MLFLOW_AUTH") == "false"
    values = [env.get(key).removeprefix("admin:") for key in SECRETS]
    assert all(len(value) == 48 and int(value, 16) >= 0 for value in values)
    # The engine's login is Prefect's auth string, its UI's one field
    assert env.get("MLSTACK_SCHEDULER_AUTH").startswith("admin:")
    assert len(set(values)) == len(values)
    assert env.get("MLSTACK_VERSION") == envfile.image_settings({})["MLSTACK_VERSION"]
    assert said == ["env: project my-project, containers run as 1001:1001"]


def test_values_already_there_are_kept_and_emptied_secrets_made_anew(tmp_path):
    env, _ = completed(tmp_path)
    env.save()
    kept = {key: env.get(key) for key in SECRETS}
    text = (
        (tmp_path / ".env")
        .read_text()
        .replace(f"JUPYTER_TOKEN={kept['JUPYTER_TOKEN']}", "JUPYTER_TOKEN=")
    )
    again, said = completed(tmp_path, text)
    assert said == []
    assert again.get("JUPYTER_TOKEN") not in ("", kept["JUPYTER_TOKEN"])
    assert again.lines.count(f"JUPYTER_TOKEN={again.get('JUPYTER_TOKEN')}") == 1
    assert all(again.get(key) == kept[key] for key in SECRETS if key != "JUPYTER_TOKEN")


def test_a_hand_written_env_with_one_line_is_completed_not_refused(tmp_path):
    env, _ = completed(tmp_path, "COMPOSE_FILE=compose.yaml:compose.team.yaml\n")
    assert env.lines[0] == "COMPOSE_FILE=compose.yaml:compose.team.yaml"
    assert env.get("COMPOSE_PROJECT_NAME") == "my-project" and env.get("POSTGRES_PASSWORD")


def test_image_settings_are_copied_in_over_older_values(tmp_path):
    env, _ = completed(tmp_path, "MLSTACK_VERSION=0.0.1\n")
    assert env.get("MLSTACK_VERSION") == envfile.image_settings({})["MLSTACK_VERSION"]
    assert sum(line.startswith("MLSTACK_VERSION=") for line in env.lines) == 1


def test_the_project_name_follows_composes_rule():
    assert project_name_from("Churn Model.v2") == "churn-model-v2"
    assert project_name_from("my_proj-1") == "my_proj-1"


def test_running_as_root_warns_that_containers_would_run_as_root(tmp_path):
    env = EnvFile(tmp_path / ".env")
    said = complete(env, {"MLSTACK_UID": "0", "MLSTACK_GID": "0", "MLSTACK_USER": "r"}, "p")
    assert said[1].startswith("warning: .env makes the containers run as root (UID 0)")


def test_extra_ca_certs_given_once_is_remembered(tmp_path):
    env, said = completed(tmp_path, EXTRA_CA_CERTS="/etc/ssl/ca.pem")
    assert env.get("EXTRA_CA_CERTS") == "/etc/ssl/ca.pem"
    assert said[-1] == "env: remembered EXTRA_CA_CERTS=/etc/ssl/ca.pem in .env"
    env.save()
    _, said = completed(tmp_path, (tmp_path / ".env").read_text(), EXTRA_CA_CERTS="/etc/ssl/ca.pem")
    assert said == []


def test_a_mode_switch_is_written_and_said(tmp_path):
    env, said = completed(tmp_path, TEAM="1")
    assert env.get("COMPOSE_FILE") == "compose.yaml:compose.team.yaml"
    assert said[-1].startswith("mode: the team tracking server")
    env.save()
    env, said = completed(tmp_path, (tmp_path / ".env").read_text(), TEAM="0")
    assert said[-1].startswith("mode: the SQLite tracking server")


def test_a_bad_switch_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(Failure) as refused:
        completed(tmp_path, "A=1\n", GPU="yes")
    assert refused.value.status == 2
    assert str(refused.value) == (
        "compose.gpu.yaml's switch must be 1 or 0 (make up GPU=1, make up GPU=0), not 'yes'"
    )
    assert (tmp_path / ".env").read_text() == "A=1\n"


def test_saving_makes_the_file_readable_by_its_owner_only(tmp_path):
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    os.chmod(path, 0o644)
    env = EnvFile(path)
    env.set("B", "2")
    env.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "A=1\nB=2\n"
    assert not (tmp_path / ".env.partial").exists()


def test_scheduled_jobs_are_a_profile_remembered_and_said_and_a_bad_switch_refused(tmp_path):
    env, said = completed(tmp_path, SCHEDULE="1")
    assert env.get("COMPOSE_PROFILES") == "schedule"
    assert said[-1].startswith("mode: scheduled jobs on; COMPOSE_PROFILES=schedule in .env")
    env.save()
    env, said = completed(tmp_path, (tmp_path / ".env").read_text(), TEAM="1")
    assert env.get("COMPOSE_PROFILES") == "schedule", "another switch keeps the jobs on"
    env.save()
    env, said = completed(tmp_path, (tmp_path / ".env").read_text(), SCHEDULE="0")
    assert env.get("COMPOSE_PROFILES") == "" and said[-1].startswith("mode: scheduled jobs off")
    with pytest.raises(Failure) as refused:
        completed(tmp_path, "A=1\n", SCHEDULE="yes")
    assert "(make up SCHEDULE=1, make up SCHEDULE=0), not 'yes'" in str(refused.value)
    assert (tmp_path / ".env").read_text() == "A=1\n"


def test_the_schedulers_password_is_a_generated_secret_and_the_notify_url_masked():
    assert "MLSTACK_SCHEDULER_AUTH" in SECRETS
    assert "MLSTACK_NOTIFY_URL" in envfile.GIVEN_SECRETS


def test_a_host_user_named_like_the_admin_gets_another_account_name(tmp_path):
    env, said = completed(tmp_path, MLSTACK_USER="admin")
    assert env.get("MLSTACK_USER") == "admin-user"
    assert said[-1] == (
        "env: MLSTACK_USER=admin-user in .env (your runs' user: admin is the tracking server's "
        "admin account)"
    )


def test_an_env_naming_the_admin_as_the_user_is_refused_in_one_line_and_kept(tmp_path):
    env, _ = completed(tmp_path)
    env.save()
    path = tmp_path / ".env"
    text = path.read_text().replace("MLSTACK_USER=ada", "MLSTACK_USER=admin")
    path.write_text(text)
    with pytest.raises(Failure) as refused:
        complete(EnvFile(path), USER, "My Project")
    assert refused.value.status == 2
    assert "\n" not in str(refused.value)
    assert "set MLSTACK_USER=admin-user (or another name) in .env" in str(refused.value)
    assert path.read_text() == text
    # The advice followed: the next completion takes the new name
    path.write_text(text.replace("MLSTACK_USER=admin", "MLSTACK_USER=admin-user"))
    assert complete(EnvFile(path), USER, "My Project") == []


def test_the_admin_account_name_is_the_one_compose_gives_the_tracking_server():
    compose = (envfile.ROOT / "compose.yaml").read_text()
    assert f"MLFLOW_AUTH_ADMIN_USERNAME: {envfile.ADMIN_USER}\n" in compose
    ini = (envfile.ROOT / "images" / "mlflow" / "basic_auth.ini").read_text()
    assert f"admin_username = {envfile.ADMIN_USER}\n" in ini
