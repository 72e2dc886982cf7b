"""The schedule file's checks (images/scheduler's mlstack_schedules.spec), from its source on the
host: each kind of bad entry refused in one line naming the entry, a good file read whole, and
the demo project's own file valid. Prefect (tests/requirements.lock, the scheduler image's pin)
reads the cron expressions and time zones as the engine will."""

from __future__ import annotations

import shutil
import sys

import pytest

from tests.helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "images" / "scheduler" / "mlstack_schedules" / "src"))

from mlstack_schedules import spec  # noqa: E402 (its source on the path first)

GOOD = """
[defaults]
timezone = "Europe/Paris"
retries = 1

[[job]]
name = "nightly-train"
command = ["python train.py --register-model wine", "python evaluate.py --model 'models:/wine/latest'"]
cron = "0 2 * * *"
timeout = "2h"

[[job]]
name = "drift"
command = "python monitor.py"
cron = "0 * * * *"
timezone = "UTC"
retries = 0
if_running = "queue"
missed = "run-once"
enabled = false
"""


def test_a_good_file_gives_each_job_with_the_defaults_under_its_own_options():
    first, second = spec.parse(GOOD)
    assert first.name == "nightly-train" and first.timezone == "Europe/Paris"
    assert first.retries == 1 and first.timeout == 7200 and first.if_running == "skip"
    assert first.argv[1] == ("python", "evaluate.py", "--model", "models:/wine/latest")
    assert second.command == ("python monitor.py",) and second.timezone == "UTC"
    assert (second.retries, second.if_running, second.missed, second.enabled) == (
        0,
        "queue",
        "run-once",
        False,
    )
    assert second.timeout is None and second.retry_delay == 60


JOB = '[[job]]\nname = "{name}"\ncommand = "{command}"\ncron = "{cron}"\n{extra}\n'


def job(name="nightly", command="python train.py", cron="0 2 * * *", extra=""):
    return JOB.format(name=name, command=command, cron=cron, extra=extra)


@pytest.mark.parametrize(
    "text, says",
    [
        (job(cron="61 * * * *"), "job 'nightly': Invalid cron string"),
        (job(cron="0 2 * *"), "job 'nightly': cron = '0 2 * *' is not a cron expression"),
        (job(extra='timezone = "Mars/Olympus"'), "job 'nightly': Invalid timezone"),
        (job() + job(), "job 'nightly': the name is used by an earlier job"),
        (job(extra="retry = 3"), "job 'nightly': unknown option 'retry'"),
        (job(extra='if_running = "wait"'), "job 'nightly': if_running = 'wait' must be one of"),
        (job(extra='missed = "all"'), "job 'nightly': missed = 'all' must be one of"),
        (job(extra="retries = -1"), "job 'nightly': retries = -1 is not a whole number"),
        (job(extra='timeout = "soon"'), "job 'nightly': timeout = 'soon' is not a duration"),
        (job(extra="timeout = 0"), "job 'nightly': timeout must be more than 0 seconds"),
        (job(name="nightly train"), "job 'nightly train': name must be"),
        (job(command="python 'train.py"), "job 'nightly': command \"python 'train.py\""),
        ('[[job]]\nname = "x"\ncommand = "python train.py"\n', "job 'x': cron is missing"),
        ('[[job]]\nname = "x"\ncron = "* * * * *"\n', "job 'x': command must be"),
        ("[defaults]\nzone = 'UTC'\n", "[defaults]: unknown option 'zone'"),
        ("[jobs]\n", "unknown table 'jobs'"),
        ("[[job]\n", "not valid TOML"),
    ],
)
def test_each_bad_entry_is_one_line_naming_it(text, says):
    with pytest.raises(spec.ScheduleError) as refused:
        spec.parse(text)
    message = str(refused.value)
    assert message.startswith("schedules.toml: ") and says in message, message
    assert "\n" not in message


def test_an_unknown_command_is_refused_by_the_project_folders_check(tmp_path):
    (tmp_path / "train.py").write_text("")
    known = spec.project_command(
        tmp_path, lambda program: "/usr/bin/make" if program == "make" else None
    )
    assert spec.parse(job(command="python train.py --n-estimators 5"), known)
    assert spec.parse(job(command="make features"), known)
    assert spec.parse(job(command="python -m mlstack_demo.features"), known)
    for command, says in [
        ("python train2.py", "no file train2.py in the project folder"),
        ("dbt run", "no program dbt in the runner image"),
        ("./run.sh", "no file ./run.sh in the project"),
    ]:
        with pytest.raises(spec.ScheduleError) as refused:
            spec.parse(job(command=command), known)
        assert f"job 'nightly': unknown command '{command}': {says}" in str(refused.value)


def test_the_demo_projects_schedule_file_is_valid_with_its_own_commands():
    project = REPO_ROOT / "project"
    jobs = spec.load(project / "schedules.toml", project, lambda name: shutil.which(name) or (
        "/usr/bin/" + name if name in ("python", "python3") else None))  # fmt: skip
    assert [each.name for each in jobs] == ["nightly-train", "morning-predictions", "hourly-drift"]
    nightly = jobs[0]
    assert any("--promote champion" in step for step in nightly.command)


def test_a_schedule_file_that_cannot_be_read_is_one_line(tmp_path):
    with pytest.raises(spec.ScheduleError) as refused:
        spec.load(tmp_path / "schedules.toml", tmp_path, shutil.which)
    assert str(refused.value).startswith("schedules.toml: cannot be read")


def test_a_jobs_processes_get_its_tags_and_never_the_engines_credentials(monkeypatch):
    from collections import deque

    from mlstack_schedules import flow

    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:secret")
    monkeypatch.setenv("MLSTACK_NOTIFY_URL", "json://127.0.0.1:9/")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    environment = flow.job_environment("nightly", "2026-12-07T02:00:00+00:00", "abc")
    assert not [key for key in environment if key.startswith("PREFECT_")]
    assert "MLSTACK_NOTIFY_URL" not in environment
    assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert environment["MLSTACK_SCHEDULE_JOB"] == "nightly"
    assert environment["MLSTACK_SCHEDULE_RUN_ID"] == "abc"
    said = deque(["loading", "error: the data file is missing", "Traceback ...", ""])
    assert flow.last_error_line(said) == "error: the data file is missing"
    assert flow.last_error_line(deque(["a", "ValueError: bad", ""])) == "ValueError: bad"
    assert flow.last_error_line(deque()) == ""


def test_a_time_missed_while_the_stack_was_down_is_skipped_saying_why():
    from datetime import datetime, timedelta, timezone

    from mlstack_schedules import flow

    now = datetime.now(timezone.utc)
    up_since = now - timedelta(minutes=2)
    reason = flow.missed("skip", "a-job", now - timedelta(hours=3), up_since)
    assert reason.startswith("missed: scheduled at ") and 'missed = "skip"' in reason
    for policy in ("skip", "run-once"):
        # A time while the worker ran: on time, or queued behind the job's previous run
        assert flow.missed(policy, "a-job", now - timedelta(seconds=30), up_since) is None
        assert (
            flow.missed(policy, "a-job", now - timedelta(hours=2), now - timedelta(hours=5)) is None
        )
    # The worker's start as the kernel tells it: in the past, after the machine's boot
    assert flow.worker_started() <= datetime.now(timezone.utc)


def test_a_failures_message_links_the_runs_logs_when_make_up_wrote_the_ui_url(
    tmp_path, monkeypatch
):
    from mlstack_schedules import flow

    monkeypatch.setattr(flow, "PROJECT", str(tmp_path))
    assert flow.run_link("abc") == ""
    (tmp_path / ".mlstack").mkdir()
    (tmp_path / ".mlstack" / "urls.env").write_text(
        "MLSTACK_MLFLOW_URL=http://127.0.0.1:5000\nMLSTACK_SCHEDULER_URL=http://127.0.0.1:4321\n"
    )
    assert flow.run_link("abc") == " (logs: http://127.0.0.1:4321/runs/flow-run/abc)"
