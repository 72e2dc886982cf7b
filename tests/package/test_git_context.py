"""mlstack.git_context: the clone's commit, branch and remote as MLflow tags, read from a git
directory alone (the containers see the clone's .git, not its work tree)."""

from __future__ import annotations

import subprocess

from mlstack.git_context import git_tags


def git(folder, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    done = subprocess.run(
        ["git", *identity, *args], cwd=folder, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_commit_branch_and_remote_without_credentials(tmp_path):
    git(tmp_path, "init", "--quiet", "--initial-branch=main")
    git(tmp_path, "remote", "add", "origin", "https://user:secret@example.invalid/team/x.git")
    git(tmp_path, "commit", "--quiet", "--allow-empty", "-m", "one")
    tags = git_tags(str(tmp_path / ".git"))
    assert tags == {
        "mlflow.source.git.commit": git(tmp_path, "rev-parse", "HEAD"),
        "mlflow.source.git.branch": "main",
        "mlflow.source.git.repoURL": "https://example.invalid/team/x.git",
    }
    # Packed refs (as after git gc or a clone), a detached HEAD
    git(tmp_path, "pack-refs", "--all")
    git(tmp_path, "checkout", "--quiet", "--detach")
    tags = git_tags(str(tmp_path / ".git"))
    assert tags["mlflow.source.git.commit"] == git(tmp_path, "rev-parse", "HEAD")
    assert "mlflow.source.git.branch" not in tags


def test_no_repository_gives_no_tags(tmp_path):
    assert git_tags(str(tmp_path)) == {}
    (tmp_path / "HEAD").write_text("garbage\n")
    assert git_tags(str(tmp_path)) == {}


def test_a_scheduled_jobs_runs_carry_its_name_time_and_engine_run(monkeypatch):
    from mlstack import schedule_context

    for name in schedule_context.TAGS.values():
        monkeypatch.delenv(name, raising=False)
    assert not schedule_context.ScheduledJobContext().in_context()
    monkeypatch.setenv("MLSTACK_SCHEDULE_JOB", "nightly-train")
    monkeypatch.setenv("MLSTACK_SCHEDULED_TIME", "2026-12-07T02:00:00+00:00")
    monkeypatch.setenv("MLSTACK_SCHEDULE_RUN_ID", "0b4bbd35")
    context = schedule_context.ScheduledJobContext()
    assert context.in_context()
    assert context.tags() == {
        "mlstack.schedule.job": "nightly-train",
        "mlstack.schedule.scheduled_time": "2026-12-07T02:00:00+00:00",
        "mlstack.schedule.run_id": "0b4bbd35",
    }
