"""The team stack benchmark: the team stack (compose.team.yaml: the tracking server on
PostgreSQL and the S3 object store, auth on, several workers) next to the SQLite default, in the
same run, probes alternating between the two stacks.

- ``team-log-metric-latency``, ``team-log-batch-throughput``: MLflow's client in each stack's
  runner logging to its tracking server.
- ``team-idle-memory``: the team's services at rest, against the SQLite default's mlflow.

The SQLite default is the run's own project (`make up`); the team stack is its second project
(`<project>-2`, `make up TEAM=1`), both built and removed by the benchmark's workspace."""

from __future__ import annotations

import argparse
import subprocess
import time
from dataclasses import dataclass, field

from bench.measure import build_stack, last_json_line, median_rss, settle
from bench.table import Row, median, millis, p95, ratio, size, throughput, verdict
from bench.workspace import BenchError, Workspace, group_process, log

NAME = "team"
ROWS = ("team-log-metric-latency", "team-log-batch-throughput", "team-idle-memory")
# What `make up TEAM=1` merges (tests/team/helpers.py names the same)
TEAM_COMPOSE_FILE = "compose.yaml:compose.team.yaml"
TEAM_SERVICES = ("mlflow", "postgres", "s3")
# A first `make up TEAM=1` migrates a new PostgreSQL database: minutes on a busy machine
TEAM_UP_TIMEOUT_S = 900


@dataclass
class TeamResults:
    """The raw numbers. ``sqlite`` and ``team`` hold one probe result per repetition
    (bench/probe_mlflow.py's JSON: seconds per call); ``rss_bytes`` the team services' idle
    RSS by service; ``workers`` the team server's worker count; ``error`` why it failed."""

    sqlite: list[dict] = field(default_factory=list)
    team: list[dict] = field(default_factory=list)
    rss_bytes: dict[str, int] = field(default_factory=dict)
    sqlite_rss_bytes: int | None = None
    workers: str = ""
    team_up_s: float | None = None
    error: str = ""


# The host ports make keeps in .env: the two stacks of this figure share one folder (and .env),
# so the team stack's are left to Docker (set empty in its environment, which wins over .env)
PORT_SETTINGS = ("MLSTACK_MLFLOW_PORT", "MLSTACK_JUPYTER_PORT", "MLSTACK_DASK_DASHBOARD_PORT")


def team_env(ws: Workspace) -> dict[str, str]:
    """The environment of the team stack's make and compose calls: the run's second project
    with compose.team.yaml merged, its host ports picked by Docker."""
    return (
        ws.env(ws.second_project)
        | {"COMPOSE_FILE": TEAM_COMPOSE_FILE}
        | {setting: "" for setting in PORT_SETTINGS}
    )


def sqlite_env(ws: Workspace) -> dict[str, str]:
    """The environment of the SQLite default's calls: the run's project in the default mode,
    whatever mode the shared .env holds."""
    return ws.env() | {"COMPOSE_FILE": "compose.yaml"}


def run_in(ws: Workspace, env: dict[str, str], args: list[str], timeout: float) -> str:
    """Run a command in the workspace's copy with ``env``.

    Returns:
        Its output (stdout and stderr together).

    Raises:
        BenchError: on a non-zero exit or a timeout (seconds), with the output's tail.
    """
    with group_process(args, ws.directory, env) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise BenchError(f"{' '.join(args)} took over {timeout:.0f} s") from error
    if process.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed:\n{output[-3000:]}")
    return output


def probe(ws: Workspace, env: dict[str, str], calls: int, batches: int) -> dict:
    """bench/probe_mlflow.py in a runner container of the stack ``env`` names, against its
    tracking server (logged in as the stack's runner is, when auth is on)."""
    args = ["docker", "compose", "run", "--rm", "-T", "bash", "python", "bench/probe_mlflow.py"]
    args += ["--uri", "http://mlflow:5000", "--calls", str(calls), "--batches", str(batches)]
    args += ["--profile-calls", str(min(calls, 200))]
    return last_json_line(run_in(ws, env, args, timeout=1200))


def container_of(ws: Workspace, env: dict[str, str], service: str):
    """The running container of ``service`` in the stack ``env`` names."""
    ids = run_in(ws, env, ["docker", "compose", "ps", "--quiet", service], timeout=120).split()
    if not ids:
        raise BenchError(f"service {service} has no container")
    return ws.client.containers.get(ids[-1])


def run_team(
    ws: Workspace, team: TeamResults, reps: int, calls: int, batches: int, idle_s: float
) -> None:
    """Measure into ``team``: both stacks up side by side, then ``reps`` rounds of
    the logging probe (``calls`` log_metric and ``batches`` log_batch calls each), SQLite and
    team alternating, after the team services' idle memory. A failure is kept in
    ``team.error``, never raised."""
    log("the team stack next to the SQLite default")
    try:
        default_env = sqlite_env(ws)
        log("  make up (the SQLite default) and the project images of the team stack")
        run_in(ws, default_env, ["make", "--no-print-directory", "up"], timeout=900)
        build_stack(ws, ws.second_project)
        log("  make up in team mode (first start: migrates the PostgreSQL database)")
        env = team_env(ws)
        start = time.perf_counter()
        # COMPOSE_FILE in the environment, not TEAM=1: that would record team mode in the
        # .env both stacks share
        run_in(ws, env, ["make", "--no-print-directory", "up"], TEAM_UP_TIMEOUT_S)
        up_at = time.perf_counter()
        team.team_up_s = up_at - start
        settle(up_at, idle_s)
        containers = {service: container_of(ws, env, service) for service in TEAM_SERVICES}
        team.rss_bytes = median_rss(containers)
        team.sqlite_rss_bytes = median_rss({"mlflow": container_of(ws, default_env, "mlflow")})[
            "mlflow"
        ]
        settings = containers["mlflow"].attrs["Config"]["Env"]
        team.workers = next(
            (e.split("=", 1)[1] for e in settings if e.startswith("MLFLOW_WORKERS=")), "?"
        )
        log(f"  idle RSS {sum(team.rss_bytes.values()) / 1e9:.2f} GB; {team.workers} workers")
        for rep in range(reps):
            log(f"  logging probes, SQLite then team ({rep + 1}/{reps})")
            team.sqlite.append(probe(ws, default_env, calls, batches))
            team.team.append(probe(ws, env, calls, batches))
    except BenchError as error:
        log(f"  failed: {error}")
        team.error = str(error).splitlines()[0]


def _pooled(results: list[dict], key: str) -> list[float]:
    return [value for result in results for value in result.get(key, [])]


def _pooled_logging(results: list[dict]) -> dict:
    """The repetitions' probe results as one (timings pooled)."""
    if not results:
        return {}
    keys = ("log_metric_s", "log_batch_s", "health_s", "raw_log_metric_s")
    return {key: _pooled(results, key) for key in keys} | {"batch_size": results[0]["batch_size"]}


def rows(team: TeamResults) -> list[Row]:
    """The table's rows of this benchmark (ROWS, in that order)."""
    sqlite, ours = _pooled_logging(team.sqlite), _pooled_logging(team.team)
    team_p50, team_p95 = median(ours.get("log_metric_s", [])), p95(ours.get("log_metric_s", []))
    base_p50, base_p95 = median(sqlite.get("log_metric_s", [])), p95(sqlite.get("log_metric_s", []))
    q50, q95 = ratio(team_p50, base_p50), ratio(team_p95, base_p95)
    team_tp, base_tp = (throughput(ours) if ours else None), (
        throughput(sqlite) if sqlite else None
    )
    q_tp = ratio(team_tp, base_tp)
    rss = sum(team.rss_bytes.values()) if team.rss_bytes else None
    parts = ", ".join(f"{name} {size(value)}" for name, value in team.rss_bytes.items())
    return [
        Row(
            ROWS[0],
            f"team stack: sync `log_metric` latency, p50 / p95 "
            f"({len(ours.get('log_metric_s', [])):,} calls each, alternating)",
            f"{millis(team_p50)} / {millis(team_p95)}",
            f"{millis(base_p50)} / {millis(base_p95)} (SQLite default)",
            "—" if q50 is None else f"{q50:.2f} / {q95:.2f}",
            "p50 ≤ 2 × baseline",
            verdict(None if q50 is None else q50 <= 2),
        ),
        Row(
            ROWS[1],
            "team stack: `log_batch` throughput, batches of 1,000 metrics",
            "—" if team_tp is None else f"{team_tp:,.0f} metrics/s",
            "—" if base_tp is None else f"{base_tp:,.0f} metrics/s (SQLite default)",
            "—" if q_tp is None else f"{q_tp:.2f}",
            "≥ baseline",
            verdict(None if q_tp is None else q_tp >= 1),
        ),
        Row(
            ROWS[2],
            f"team stack: idle RSS of its services ({parts or 'not measured'}; "
            f"{team.workers or '?'} workers)",
            size(rss),
            f"{size(team.sqlite_rss_bytes)} (SQLite default's mlflow)",
            "—" if ratio(rss, team.sqlite_rss_bytes) is None else
            f"{ratio(rss, team.sqlite_rss_bytes):.2f}",
            "report",
            "—",
        ),  # fmt: skip
    ]


def details(team: TeamResults) -> list[str]:
    """Where the time goes, as the results file's list items: a bare ``GET /health`` and the
    raw log-metric request (no MLflow client) on each stack, per repetition's medians."""
    if team.error:
        return [f"`{ROWS[0]}`: error: {team.error}"]
    items = []
    if team.team_up_s is not None:
        items.append(f"`{ROWS[0]}`: `make up TEAM=1` (first start) took {team.team_up_s:.0f} s")
    for name, results in (("SQLite default", team.sqlite), ("team stack", team.team)):
        for key, what in (
            ("log_metric_s", "`log_metric`"),
            ("health_s", "bare `GET /health`"),
            ("raw_log_metric_s", "raw log-metric request"),
        ):
            medians = ", ".join(millis(median(r.get(key, []))) for r in results)
            items.append(f"`{ROWS[0]}`, {name}: {what} p50 per repetition: {medians}")
    return items


def describe(args: argparse.Namespace, team: TeamResults) -> str:
    """How much was measured, for the results file's settings line."""
    return (
        f"{args.team_reps} rounds of {args.team_calls} `log_metric` and {args.team_batches} "
        "`log_batch` calls per tracking store, alternating"
    )


def measure(ws: Workspace, args: argparse.Namespace) -> TeamResults:
    """Both stacks and the probes with the options' sizes; a failure is kept in ``error``."""
    team = TeamResults()
    run_team(
        ws,
        team,
        reps=args.team_reps,
        calls=args.team_calls,
        batches=args.team_batches,
        idle_s=args.idle_seconds,
    )
    return team
