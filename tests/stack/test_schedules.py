"""Scheduled jobs end to end (make up SCHEDULE=1): the real engine (Prefect's server), the
project's worker, the tracking server, a script the user wrote and the demo's nightly loop. One
stack for the module; its every-minute job runs while the other tests do, and is checked last."""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import datetime, timezone
from typing import Iterator

import docker
import pandas as pd
import pytest
import requests
from dotenv import dotenv_values
from sklearn.datasets import load_wine

from tests.helpers import (
    Project,
    private_copy,
    project_resources,
    scheduler_api,
    scheduler_rows,
    secret_holders,
)

# One stack for the module: its tests stay on one pytest-xdist worker, in file order (spread
# over both, each worker would start a stack of its own and miss the runs of the other's tests)
pytestmark = pytest.mark.xdist_group("schedules")

# A script of the user's own, with MLflow's client as its docs write it (no stack helper): a
# job that works by hand works on schedule
USER_JOB = """\
import os

import mlflow

held = [k for k in os.environ if k.startswith("PREFECT_") or k == "MLSTACK_NOTIFY_URL"]
print(f"engine settings in the job: {held}")

with mlflow.start_run(run_name="user-job") as run:
    mlflow.log_metric("rows", 178)
print(f"user job logged run {run.info.run_id}")
"""
SLOW_JOB = """\
import time

print("slow job started", flush=True)
time.sleep(20)
"""
TEST_JOBS = """
[[job]]
name = "every-minute"
command = "python user_job.py"
cron = "* * * * *"

[[job]]
name = "slow"
command = "python slow_job.py"
cron = "0 0 1 1 *"
"""
# The notification sink: an HTTP server on 127.0.0.1 in the worker's own network namespace,
# writing each request's body to a file there
SINK_PORT = 8099
SINK = f"""
import http.server

class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open("/tmp/notifications", "ab") as out:
            out.write(body + b"\\n")
        self.send_response(200)
        self.end_headers()

http.server.HTTPServer(("127.0.0.1", {SINK_PORT}), Sink).serve_forever()
"""


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory, test_uid, built_images) -> Iterator[Project]:
    """A copy of the project with the test jobs added to its schedules.toml, brought up with
    make up SCHEDULE=1 and a notification URL in .env; torn down with its volumes."""
    folder, env = private_copy(tmp_path_factory.mktemp("sched"), "sched", test_uid)
    project_dir = folder / "project"
    (project_dir / "user_job.py").write_text(USER_JOB)
    (project_dir / "slow_job.py").write_text(SLOW_JOB)
    schedule = project_dir / "schedules.toml"
    schedule.write_text(schedule.read_text() + TEST_JOBS)
    project = Project(folder, env)
    assert project.make(".env").returncode == 0
    with open(folder / ".env", "a") as settings:
        settings.write(f"MLSTACK_NOTIFY_URL=json://127.0.0.1:{SINK_PORT}/\n")
    try:
        started = project.make("up", "SCHEDULE=1")
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        project.up_output = started.stdout
        yield project
    finally:
        project.down()
        client = docker.from_env()
        try:
            left = project_resources(client, project.name)
        finally:
            client.close()
        assert not left, f"teardown left {left}"


def env_value(project: Project, key: str) -> str:
    """A setting of the project's .env, as python-dotenv reads it."""
    return dotenv_values(project.directory / ".env").get(key) or ""


def engine(project: Project) -> tuple[str, tuple[str, str]]:
    """The engine's API URL on the host and its credentials, from .env as a user reads them."""
    return scheduler_api(project.directory)


def flow_runs(project: Project, job: str) -> list[dict]:
    """The engine's runs of job ``job``, newest expected start first (through its REST API)."""
    found = scheduler_rows(
        project.directory, "deployments", {"deployments": {"name": {"any_": [job]}}}
    )
    assert found, f"no deployment {job}"
    return scheduler_rows(
        project.directory,
        "flow_runs",
        {"deployments": {"id": {"any_": [found[0]["id"]]}}, "sort": "EXPECTED_START_TIME_DESC"},
    )


def run_logs(project: Project, run_id: str) -> str:
    logs = scheduler_rows(
        project.directory, "logs", {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
    )
    return "\n".join(entry["message"] for entry in logs)


def mlflow_client(project: Project):
    """MLflow's client on the host with its defaults, pointed at the tracking server's URL."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"http://127.0.0.1:{env_value(project, 'MLSTACK_MLFLOW_PORT')}")


def test_make_up_prints_the_engines_url_and_applies_the_project_file(scheduled):
    ui = re.search(r"^Schedules: (http://127\.0\.0\.1:\d+) ", scheduled.up_output, re.M)
    assert ui, scheduled.up_output
    # The UI's page (its login asks for the auth string), served by the engine
    page = requests.get(ui[1], timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower(), page.text[:300]
    for job in ("nightly-train", "morning-predictions", "hourly-drift", "every-minute", "slow"):
        assert f"schedules: added {job} " in scheduled.up_output
    listed = scheduled.make("schedules")
    assert listed.returncode == 0, listed.stderr
    assert re.search(
        r"^nightly-train\s+0 2 \* \* \* UTC\s+\d{4}-\d\d-\d\d 02:00 UTC", listed.stdout, re.M
    )
    # Plain docker compose, as .env leaves it, sees the same services
    ps = scheduled.compose("ps", "--format", "{{.Service}}")
    assert {"scheduler", "scheduler-worker"} <= set(ps.stdout.split())


def test_the_engine_refuses_requests_without_credentials_and_no_container_holds_the_socket(
    scheduled, docker_client, test_uid
):
    api, login = engine(scheduled)
    assert requests.post(f"{api}/flow_runs/filter", json={}, timeout=10).status_code == 401
    assert (
        requests.post(
            f"{api}/flow_runs/filter", json={}, auth=("admin", "x"), timeout=10
        ).status_code
        == 401
    )
    assert (
        requests.post(f"{api}/flow_runs/filter", json={}, auth=login, timeout=10).status_code == 200
    )
    containers = docker_client.containers.list(
        filters={"label": f"com.docker.compose.project={scheduled.name}"}
    )
    assert {c.labels["com.docker.compose.service"] for c in containers} >= {
        "scheduler",
        "scheduler-worker",
    }
    for container in containers:
        sources = [mount["Source"] for mount in container.attrs["Mounts"]]
        assert not [s for s in sources if s.endswith("docker.sock")], container.name
        ports = container.attrs["HostConfig"]["PortBindings"] or {}
        assert all(b["HostIp"] == "127.0.0.1" for bs in ports.values() for b in bs)
    # The worker runs as the host user, like the runner
    worker = [
        c for c in containers if c.labels["com.docker.compose.service"] == "scheduler-worker"
    ][0]
    assert worker.attrs["Config"]["User"] == f"{test_uid}:{test_uid}"
    # The worker has the runner's environment, never the admin's password
    assert secret_holders(scheduled.name, env_value(scheduled, "MLFLOW_ADMIN_PASSWORD")) == {
        "mlflow"
    }


def test_the_nightly_loop_promotes_a_passing_candidate_and_a_worse_one_fails_the_job(scheduled):
    client = mlflow_client(scheduled)
    first = scheduled.make("schedule-run", "JOB=nightly-train")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert re.search(r"^job nightly-train: run \S+ \(\S+\): Completed$", first.stdout, re.M)
    assert client.get_model_version_by_alias("wine-classifier", "champion").version == "1"
    second = scheduled.make("schedule-run", "JOB=nightly-train")
    assert second.returncode == 0, second.stdout[-2000:]
    assert client.get_model_version_by_alias("wine-classifier", "champion").version == "2"

    # The morning job predicts each new file of data/incoming/ with the champion, once
    incoming = scheduled.directory / "project" / "data" / "incoming"
    load_wine(as_frame=True).frame.sample(20, random_state=3).to_csv(
        incoming / "day1.csv", index=False
    )
    predicted = scheduled.make("schedule-run", "JOB=morning-predictions")
    assert predicted.returncode == 0, predicted.stdout[-2000:]
    output = scheduled.directory / "project" / "data" / "predictions" / "day1.csv"
    assert len(pd.read_csv(output)["prediction"]) == 20
    output.write_text("kept")
    assert scheduled.make("schedule-run", "JOB=morning-predictions").returncode == 0
    assert output.read_text() == "kept", "a file already predicted was predicted again"

    # Forced worse: the job trains a one-tree stump; edited in the file and applied by make up
    schedule = scheduled.directory / "project" / "schedules.toml"
    text = schedule.read_text()
    schedule.write_text(text.replace(
        '"python train.py --register-model wine-classifier"',
        '"python train.py --register-model wine-classifier --n-estimators 1 --max-depth 1"',
    ))  # fmt: skip
    # The notification sink, in the worker's network namespace
    sink = scheduled.compose("exec", "-d", "-T", "scheduler-worker", "python", "-c", SINK)
    assert sink.returncode == 0, sink.stderr
    assert scheduled.make("up").returncode == 0
    worse = scheduled.make("schedule-run", "JOB=nightly-train")
    assert worse.returncode != 0, worse.stdout[-2000:]
    assert re.search(r"^job nightly-train: run \S+ \((\S+)\): Failed", worse.stdout, re.M)
    assert "is worse than the baseline" in worse.stdout
    assert client.get_model_version_by_alias("wine-classifier", "champion").version == "2"
    engine_run = re.search(r"\((\S+)\): Failed", worse.stdout)[1]
    # In MLflow: that job run's runs FAILED, the evaluation gate's included
    runs = client.search_runs(
        [experiment.experiment_id for experiment in client.search_experiments()],
        filter_string=f"tags.`mlstack.schedule.run_id` = '{engine_run}'",
    )
    assert runs and {run.info.status for run in runs} == {"FAILED"}
    assert {run.data.tags["mlstack.schedule.job"] for run in runs} == {"nightly-train"}
    # One message reached the sink, naming the job, the run and the error line
    sent = scheduled.compose("exec", "-T", "scheduler-worker", "cat", "/tmp/notifications")
    messages = [json.loads(line) for line in sent.stdout.splitlines() if line.strip()]
    assert len(messages) == 1, sent.stdout
    assert "nightly-train" in messages[0]["title"]
    assert (
        engine_run in messages[0]["message"] and "worse than the baseline" in messages[0]["message"]
    )
    schedule.write_text(text)


def test_a_run_while_the_previous_one_runs_is_skipped_and_the_engine_records_it(scheduled):
    first = subprocess.Popen(
        ["make", "--no-print-directory", "schedule-run", "JOB=slow"],
        cwd=scheduled.directory,
        env=scheduled.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if [run for run in flow_runs(scheduled, "slow") if run["state_type"] == "RUNNING"]:
                break
            time.sleep(1)
        else:
            pytest.fail("the slow job never ran")
        second = scheduled.make("schedule-run", "JOB=slow")
        assert second.returncode != 0
        assert re.search(
            r"^job slow: run \S+ \(\S+\): Cancelled", second.stdout, re.M
        ), second.stdout
    finally:
        output, _ = first.communicate(timeout=120)
    assert "Completed" in output, output
    states = [run["state_name"] for run in flow_runs(scheduled, "slow")]
    assert sorted(state for state in states if state != "Scheduled") == ["Cancelled", "Completed"]


@pytest.mark.parametrize(
    "entry, says",
    [
        ('cron = "61 * * * *"', "job 'bad': Invalid cron string"),
        ('cron = "* * * * *"\nretry = 2', "job 'bad': unknown option 'retry'"),
        ('cron = "* * * * *"', "job 'bad': unknown command 'python nope.py'"),
    ],
)
def test_a_bad_entry_is_one_line_and_the_schedules_in_force_stay(scheduled, entry, says):
    schedule = scheduled.directory / "project" / "schedules.toml"
    good = schedule.read_text()
    listed = scheduled.make("schedules")
    assert listed.returncode == 0, listed.stderr
    before = listed.stdout
    schedule.write_text(good + f'\n[[job]]\nname = "bad"\ncommand = "python nope.py"\n{entry}\n')
    try:
        refused = scheduled.make("up")
    finally:
        schedule.write_text(good)
    assert refused.returncode != 0
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0], refused.stderr
    listed = scheduled.make("schedules")
    assert listed.returncode == 0, listed.stderr
    after = listed.stdout
    jobs = lambda listing: [line.split()[0] for line in listing.splitlines()[1:]]  # noqa: E731
    assert jobs(after) == jobs(before) and "bad" not in jobs(after)


def test_a_duplicate_name_is_refused_too(scheduled):
    schedule = scheduled.directory / "project" / "schedules.toml"
    good = schedule.read_text()
    schedule.write_text(good + TEST_JOBS.split('[[job]]\nname = "slow"')[0])
    try:
        refused = scheduled.make("up")
    finally:
        schedule.write_text(good)
    assert refused.returncode != 0
    assert (
        "error: schedules.toml: job 'every-minute': the name is used by an earlier job"
        in refused.stderr
    )


def test_the_every_minute_job_ran_on_time_with_its_tags_and_its_output_in_the_engine(scheduled):
    deadline = time.monotonic() + 150
    done = []
    while time.monotonic() < deadline:
        done = [r for r in flow_runs(scheduled, "every-minute") if r["state_type"] == "COMPLETED"]
        if done:
            break
        time.sleep(3)
    assert done, "the every-minute job never completed"
    run = done[-1]
    expected = datetime.fromisoformat(run["expected_start_time"])
    started = datetime.fromisoformat(run["start_time"])
    assert (started - expected).total_seconds() < 90, run
    logs = run_logs(scheduled, run["id"])
    found = re.search(r"user job logged run ([0-9a-f]{32})", logs)
    assert found, logs
    # The job's process had neither the engine's login nor the notification URL
    assert "engine settings in the job: []" in logs
    logged = mlflow_client(scheduled).get_run(found[1])
    assert logged.data.tags["mlstack.schedule.job"] == "every-minute"
    assert logged.data.tags["mlstack.schedule.run_id"] == run["id"]
    scheduled_at = datetime.fromisoformat(logged.data.tags["mlstack.schedule.scheduled_time"])
    assert scheduled_at == expected.astimezone(timezone.utc)


def test_make_down_and_up_keep_the_schedules_and_their_history(scheduled):
    before = {
        run["id"]
        for run in flow_runs(scheduled, "nightly-train")
        if run["state_type"] != "SCHEDULED"
    }
    assert scheduled.make("down").returncode == 0
    again = scheduled.make("up")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "schedules: added" not in again.stdout
    after = {
        run["id"]
        for run in flow_runs(scheduled, "nightly-train")
        if run["state_type"] != "SCHEDULED"
    }
    assert before and before <= after
    listed = scheduled.make("schedules").stdout
    assert re.search(r"^nightly-train\s.*\sFailed$", listed, re.M), listed
