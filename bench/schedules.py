"""The scheduled jobs benchmark (make up SCHEDULE=1) on the run's project.

- ``schedule-idle-memory``: the scheduling engine and its worker at rest, against the stack's
  own services (mlflow and jupyter).
- ``schedule-delay``: from a job's scheduled time to its process start, against what a cron line
  around `docker compose run` gives (the same command started by hand).

The run's project is brought up in the schedule mode with one every-minute job that prints its
start time; the engine's API gives each run's scheduled time and output."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import requests
from dotenv import dotenv_values

from bench.measure import median_rss, settle
from bench.table import Row, median, ratio, seconds, size
from bench.workspace import BenchError, Workspace, log

NAME = "schedules"
ROWS = ("schedule-idle-memory", "schedule-delay")
# The job: its first act prints the time its process started (seconds since the epoch)
PROBE = "python -c \"import time; print('started', time.time())\""
# The same, started by hand
PROBE_ARGV = ("python", "-c", "import time; print('started', time.time())")
SCHEDULE = f'[[job]]\nname = "bench-probe"\ncommand = """{PROBE}"""\ncron = "* * * * *"\n'
STACK = ("mlflow", "jupyter")
ENGINE = ("scheduler", "scheduler-worker")


@dataclass
class ScheduleResults:
    """The raw numbers: each service's idle RSS (bytes), each scheduled run's delay and each
    by-hand start's delay (seconds), why it failed."""

    rss_bytes: dict[str, int] = field(default_factory=dict)
    delays_s: list[float] = field(default_factory=list)
    by_hand_s: list[float] = field(default_factory=list)
    error: str = ""


def env_value(ws: Workspace, key: str) -> str:
    """A setting of the workspace's .env, as python-dotenv reads it."""
    return dotenv_values(ws.directory / ".env").get(key) or ""


def _api(ws: Workspace, path: str, body: dict) -> list[dict]:
    answer = requests.post(
        f"http://127.0.0.1:{env_value(ws, 'MLSTACK_SCHEDULER_PORT')}/api/{path}",
        json=body,
        auth=tuple(env_value(ws, "MLSTACK_SCHEDULER_AUTH").split(":", 1)),
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()


def scheduled_delays(ws: Workspace) -> list[float]:
    """For each completed run of the probe job: its process's start less its scheduled time."""
    from datetime import datetime

    delays = []
    runs = _api(ws, "flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
    for run in runs:
        logs = _api(ws, "logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}})
        started = [e["message"].split()[1] for e in logs if e["message"].startswith("started ")]
        if started:
            expected = datetime.fromisoformat(run["expected_start_time"]).timestamp()
            delays.append(float(started[0]) - expected)
    return delays


def run_schedule(ws: Workspace, results: ScheduleResults, runs: int, idle_s: float) -> None:
    """Measure into ``results``: the project up with SCHEDULE=1 and the
    probe job, the services' idle RSS, then ``runs`` scheduled runs of the job, and as many
    `docker compose run` starts. A failure is kept in ``results.error``, never raised."""
    log("the scheduled jobs (make up SCHEDULE=1)")
    schedule = ws.directory / "project" / "schedules.toml"
    kept = schedule.read_text() if schedule.exists() else None
    try:
        schedule.write_text(SCHEDULE)
        ws.run(["make", "--no-print-directory", "up", "SCHEDULE=1"], timeout=900)
        up_at = time.perf_counter()
        settle(up_at, idle_s)
        containers = {}
        for service in STACK + ENGINE:
            _, ids = ws.compose("ps", "--quiet", service)
            if not ids.split():
                raise BenchError(f"service {service} has no container")
            containers[service] = ws.client.containers.get(ids.split()[-1])
        results.rss_bytes = median_rss(containers)
        log(f"  idle RSS: {', '.join(f'{k} {size(v)}' for k, v in results.rss_bytes.items())}")
        deadline = time.monotonic() + 60 * (runs + 2)
        while time.monotonic() < deadline:
            results.delays_s = scheduled_delays(ws)
            if len(results.delays_s) >= runs:
                break
            time.sleep(10)
        log(f"  {len(results.delays_s)} scheduled runs")
        for _ in range(runs):
            asked = time.time()
            _, output = ws.compose("run", "--rm", "-T", "bash", *PROBE_ARGV)
            started = [
                line.split()[1] for line in output.splitlines() if line.startswith("started ")
            ]
            results.by_hand_s.append(float(started[0]) - asked)
    except (BenchError, requests.RequestException, IndexError, ValueError) as error:
        log(f"  failed: {error}")
        results.error = str(error).splitlines()[0]
    finally:
        if kept is None:
            schedule.unlink(missing_ok=True)
        else:
            schedule.write_text(kept)
        try:
            ws.run(["make", "--no-print-directory", "up", "SCHEDULE=0"], timeout=600)
        except BenchError as error:
            log(f"  warning: make up SCHEDULE=0 failed: {error}")


def rows(results: ScheduleResults) -> list[Row]:
    """The table's rows of this benchmark (ROWS, in that order)."""
    engine = sum(results.rss_bytes.get(name, 0) for name in ENGINE) or None
    stack = sum(results.rss_bytes.get(name, 0) for name in STACK) or None
    parts = ", ".join(f"{name} {size(value)}" for name, value in results.rss_bytes.items())
    delay, by_hand = median(results.delays_s), median(results.by_hand_s)
    return [
        Row(
            ROWS[0],
            f"scheduled jobs: idle RSS of the engine and its worker ({parts or 'not measured'})",
            size(engine),
            f"{size(stack)} (the stack's mlflow and jupyter)",
            "—" if ratio(engine, stack) is None else f"{ratio(engine, stack):.2f}",
            "report",
            "—",
        ),
        Row(
            ROWS[1],
            f"scheduled jobs: delay from the scheduled time to the job's process start, median "
            f"of {len(results.delays_s)} runs",
            seconds(delay),
            f"{seconds(by_hand)} (a cron line's `docker compose run --rm bash`, from its call)",
            "—" if ratio(delay, by_hand) is None else f"{ratio(delay, by_hand):.2f}",
            "report",
            "—",
        ),
    ]


def details(results: ScheduleResults) -> list[str]:
    """The failure, if any, as the results file's list item."""
    return [f"`{ROWS[0]}`: error: {results.error}"] if results.error else []


def describe(args: argparse.Namespace, results: ScheduleResults) -> str:
    """How much was measured, for the results file's settings line."""
    return f"{args.schedule_runs} runs of an every-minute job and as many by hand"


def measure(ws: Workspace, args: argparse.Namespace) -> ScheduleResults:
    """The scheduled and by-hand runs (``args.schedule_runs`` each) and the idle memory."""
    results = ScheduleResults()
    run_schedule(ws, results, args.schedule_runs, args.idle_seconds)
    return results
