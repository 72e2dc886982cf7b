"""The stack's services benchmark: the default stack (`make up`: the tracking server and
Jupyter) against a default `mlflow server` and plain Docker, in the same run.

- ``log-metric-latency``, ``log-batch-throughput``: MLflow's client in the runner logging to the
  stack's tracking server, and to the same image run as a default `mlflow server` (4 workers,
  job execution on).
- ``idle-memory``: the stack's mlflow and jupyter at rest, against that default server.
- ``make-up``: `make up` with the images built until every service is healthy, against
  `mlflow server` alone on the same data.
- ``compose-run``: `docker compose run --rm bash python -c pass` against `docker run --rm`.
- ``kernel-start``: a Jupyter kernel started and answering `1+1`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass, field

from bench.measure import (
    attempt,
    last_json_line,
    make_up,
    median_rss,
    probe_logging,
    server_profile,
    service_container,
    settle,
    start_mlflow,
)
from bench.table import (
    Row,
    median,
    millis,
    p95,
    ratio,
    ratio_text,
    seconds,
    size,
    throughput,
    timeline,
    verdict,
)
from bench.workspace import RUN_LABEL, SERVICES, Workspace, log

NAME = "stack-services"
ROWS = (
    "log-metric-latency",
    "log-batch-throughput",
    "idle-memory",
    "make-up",
    "compose-run",
    "kernel-start",
)


@dataclass
class ServiceResults:
    """The raw numbers; lists hold one value per repetition (seconds unless the name says
    otherwise). A figure whose measurement failed has its error in ``errors``, under its row's
    name."""

    make_up_s: list[float] = field(default_factory=list)
    make_up_first_s: float | None = None
    make_up_profiles: list[dict[str, float]] = field(default_factory=list)
    server_start_s: list[float] = field(default_factory=list)
    server_start_profiles: list[dict[str, float]] = field(default_factory=list)
    default_server_start_s: float | None = None
    stack_rss_bytes: dict[str, int] = field(default_factory=dict)
    default_rss_bytes: int | None = None
    compose_run_s: list[float] = field(default_factory=list)
    docker_run_s: list[float] = field(default_factory=list)
    compose_run_parts_s: dict[str, list[float]] = field(default_factory=dict)
    kernel: dict[str, list[float]] = field(default_factory=dict)
    stack_logging: dict = field(default_factory=dict)
    default_logging: dict = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def describe(args: argparse.Namespace, results: ServiceResults) -> str:
    """How much was measured, for the results file's settings line."""
    return (
        f"{args.up_reps} `make up`, {args.run_reps} runs, {args.kernel_reps} kernels; "
        f"{args.calls:,} `log_metric` calls and {args.batches} `log_batch` calls per server"
    )


def measure(ws: Workspace, args: argparse.Namespace) -> ServiceResults:
    """make-up, idle-memory, kernel-start, compose-run, then the logging figures on the stack
    and on a default server, in that order, on the stack brought up by `make up`; a figure's
    failure is kept in ``errors`` and the others still run."""
    results = ServiceResults()
    log("make up (first start: creates the MLflow database)")
    results.make_up_first_s, _ = make_up(ws)
    volume = f"{ws.project}_mlflow-data"
    for rep in range(args.up_reps):
        ws.run(["make", "--no-print-directory", "down"])
        log(f"mlflow server alone, on the same data ({rep + 1}/{args.up_reps})")
        since = dt.datetime.now(dt.timezone.utc)
        container, seconds_ = start_mlflow(ws, volume)
        results.server_start_s.append(seconds_)
        results.server_start_profiles.append(server_profile(container, since))
        container.remove(force=True)
        log(f"  {seconds_:.1f} s; make up ({rep + 1}/{args.up_reps})")
        seconds_, profile = make_up(ws)
        up_at = time.perf_counter()
        results.make_up_s.append(seconds_)
        results.make_up_profiles.append(profile)
        log(f"  {seconds_:.1f} s")

    errors = results.errors
    attempt(
        errors,
        "idle-memory",
        "idle memory of the stack",
        lambda: _stack_rss(ws, results, up_at, args.idle_seconds),
    )
    attempt(
        errors,
        "kernel-start",
        "Jupyter kernel start",
        lambda: _kernel(ws, results, args.kernel_reps),
    )
    attempt(
        errors,
        "compose-run",
        "compose run vs docker run",
        lambda: _runs(ws, results, args.run_reps),
    )
    attempt(
        errors,
        "log-metric-latency",
        "log_metric and log_batch on the stack",
        lambda: results.stack_logging.update(
            probe_logging(ws, "http://mlflow:5000", args.calls, args.batches)
        ),
    )
    attempt(
        errors,
        "idle-memory",
        "a default mlflow server",
        lambda: _default_server(ws, results, args.calls, args.batches, args.idle_seconds),
    )
    return results


def _stack_rss(ws: Workspace, results: ServiceResults, up_at: float, idle_s: float) -> None:
    settle(up_at, idle_s)
    containers = {service: service_container(ws, service) for service in SERVICES}
    results.stack_rss_bytes = median_rss(containers)


def _kernel(ws: Workspace, results: ServiceResults, reps: int) -> None:
    _, output = ws.compose(
        "exec", "-T", "jupyter", "python", "bench/probe_kernel.py", "--reps", str(reps)
    )
    results.kernel = last_json_line(output)


# compose-run's breakdown: what parts of `docker compose run` cost, each timed like the figure
COMPOSE_RUN_PARTS = {
    # Compose reads and checks the project (compose.yaml, .env, env files), starts nothing
    "`docker compose config --quiet`": "config --quiet",
    # The same run without the dependency on mlflow (compose neither checks nor starts it)
    "`docker compose run --rm --no-deps`": "run --rm --no-deps bash python -c pass",
}


def _runs(ws: Workspace, results: ServiceResults, reps: int) -> None:
    """compose-run: `docker compose run --rm bash` against `docker run --rm` of the same image
    (the project's bash image), alternating after one untimed run of each (page cache); then
    the parts of COMPOSE_RUN_PARTS, ``reps`` times each, for the breakdown."""
    label = f"{RUN_LABEL}={ws.run_id}"
    docker_run = ["docker", "run", "--rm", "--label", label, ws.project_image("bash")]
    docker_run += ["python", "-c", "pass"]
    compose_run = ["docker", "compose", "run", "--rm", "bash", "python", "-c", "pass"]
    ws.run(docker_run)
    ws.run(compose_run)
    for _ in range(reps):
        results.compose_run_s.append(ws.run(compose_run)[0])
        results.docker_run_s.append(ws.run(docker_run)[0])
    for _ in range(reps):
        for part, args in COMPOSE_RUN_PARTS.items():
            seconds, _ = ws.compose(*args.split())
            results.compose_run_parts_s.setdefault(part, []).append(seconds)


def _default_server(
    ws: Workspace, results: ServiceResults, calls: int, batches: int, idle_s: float
) -> None:
    """The baseline of log-metric-latency, log-batch-throughput and idle-memory: the stack's
    mlflow image run as a default `mlflow server` (4 workers, job execution on; same SQLite
    store on a fresh volume), on the stack's network so the runner reaches it like the stack's
    own server (by IP: the default allowed hosts)."""
    volume = ws.client.volumes.create(f"{ws.project}-default-mlflow", labels=ws.labels)
    environment = {"MLFLOW_WORKERS": "4", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}
    container, seconds = start_mlflow(ws, volume.name, environment, network=f"{ws.project}_default")
    try:
        results.default_server_start_s = seconds
        up_at = time.perf_counter()
        settle(up_at, idle_s)
        results.default_rss_bytes = median_rss({"mlflow": container})["mlflow"]
        log(f"  idle RSS {results.default_rss_bytes / 1e9:.2f} GB; logging probe")
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][f"{ws.project}_default"][
            "IPAddress"
        ]
        results.default_logging = probe_logging(ws, f"http://{address}:5000", calls, batches)
    finally:
        container.remove(force=True)
        volume.remove(force=True)


def rows(r: ServiceResults) -> list[Row]:
    """The table's rows of this benchmark (ROWS, in that order)."""
    stack_calls = r.stack_logging.get("log_metric_s", [])
    base_calls = r.default_logging.get("log_metric_s", [])
    stack_p50, stack_p95 = median(stack_calls), p95(stack_calls)
    base_p50, base_p95 = median(base_calls), p95(base_calls)
    q50, q95 = ratio(stack_p50, base_p50), ratio(stack_p95, base_p95)
    stack_tp, base_tp = throughput(r.stack_logging), throughput(r.default_logging)
    stack_rss = sum(r.stack_rss_bytes.values()) if r.stack_rss_bytes else None
    q_rss = ratio(stack_rss, r.default_rss_bytes)
    up, alone = median(r.make_up_s), median(r.server_start_s)
    compose_run, docker_run = median(r.compose_run_s), median(r.docker_run_s)
    q_run = ratio(compose_run, docker_run)
    table = [
        Row(
            "log-metric-latency",
            f"sync `log_metric` latency from the runner, p50 / p95 ({len(stack_calls):,} calls)",
            f"{millis(stack_p50)} / {millis(stack_p95)}",
            f"{millis(base_p50)} / {millis(base_p95)}",
            "—" if q50 is None else f"{q50:.2f} / {q95:.2f}",
            "p50 ≤ 1.0 × baseline",
            verdict(None if q50 is None else q50 <= 1.0),
        ),
        Row(
            "log-batch-throughput",
            "`log_batch` throughput, batches of 1,000 metrics",
            "—" if stack_tp is None else f"{stack_tp:,.0f} metrics/s",
            "—" if base_tp is None else f"{base_tp:,.0f} metrics/s",
            ratio_text(ratio(stack_tp, base_tp)),
            "≥ 10,000 metrics/s",
            verdict(None if stack_tp is None else stack_tp >= 10_000),
        ),
        Row(
            "idle-memory",
            "idle RSS of the stack (mlflow + jupyter)",
            size(stack_rss),
            f"{size(r.default_rss_bytes)} (default `mlflow server`)",
            ratio_text(q_rss),
            "≤ 0.3 × baseline",
            verdict(None if q_rss is None else q_rss <= 0.3),
        ),
        Row(
            "make-up",
            "`make up`, images built, until all healthy",
            seconds(up),
            f"{seconds(alone)} (`mlflow server` start to `/health` ok)",
            ratio_text(ratio(up, alone)),
            "≤ baseline + 2 s",
            verdict(None if up is None or alone is None else up <= alone + 2),
        ),
        Row(
            "compose-run",
            "`docker compose run --rm bash python -c pass`",
            seconds(compose_run),
            f"{seconds(docker_run)} (`docker run --rm`)",
            ratio_text(q_run),
            "≤ 1.5 × baseline",
            verdict(None if q_run is None else q_run <= 1.5),
        ),
        Row(
            "kernel-start",
            "Jupyter: `POST /api/kernels` to `1+1` answered",
            seconds(median(r.kernel.get("kernel_answer_s", []))),
            "—",
            "—",
            "report",
            "—",
        ),
    ]
    for row in table:
        if row.name in r.errors and row.met == "—" and row.target != "report":
            row.met = "error"
    return table


def details(r: ServiceResults) -> list[str]:
    """Where the time and memory go, as the results file's list items."""
    items = []
    for name, logging in (("stack", r.stack_logging), ("default server", r.default_logging)):
        if logging:
            items.append(
                f"`log-metric-latency`, {name}: p50 of a bare `GET /health` "
                f"{millis(median(logging['health_s']))}, of the log-metric request sent with "
                f"plain requests {millis(median(logging['raw_log_metric_s']))}, of "
                f"`mlflow.log_metric` {millis(median(logging['log_metric_s']))}; log_batch p50 "
                f"{millis(median(logging['log_batch_s']))} per 1,000 metrics"
            )
    if r.stack_rss_bytes:
        parts = ", ".join(f"{name} {size(value)}" for name, value in r.stack_rss_bytes.items())
        items.append(f"`idle-memory` per container: {parts}")
    if r.make_up_profiles:
        parts = timeline(r.make_up_profiles)
        items.append(f"`make-up` timeline (seconds after make started): {parts}")
    if r.server_start_profiles:
        parts = timeline(r.server_start_profiles)
        items.append(f"`make-up` baseline, `mlflow server` alone (after `docker start`): {parts}")
    if r.make_up_first_s is not None:
        items.append(f"`make-up`, the first (creates the database): {seconds(r.make_up_first_s)}")
    if r.default_server_start_s is not None:
        items.append(
            f"`make-up`: a default `mlflow server` (4 workers, jobs on), fresh store: /health ok "
            f"after {seconds(r.default_server_start_s)}"
        )
    if r.compose_run_s:
        parts = ", ".join(
            f"{part} {seconds(median(values))}" for part, values in r.compose_run_parts_s.items()
        )
        items.append(
            f"`compose-run` runs: `docker compose run` "
            f"{', '.join(f'{v:.2f}' for v in r.compose_run_s)} s; `docker run` "
            f"{', '.join(f'{v:.2f}' for v in r.docker_run_s)} s"
            + (f"; parts (medians): {parts}" if parts else "")
        )
    if r.kernel:
        items.append(
            f"`kernel-start`: `POST /api/kernels` answered after "
            f"{millis(median(r.kernel['post_s']))}; `1+1` answered after "
            f"{seconds(median(r.kernel['kernel_answer_s']))} "
            f"(runs: {', '.join(f'{v:.2f}' for v in r.kernel['kernel_answer_s'])} s)"
        )
    items += [f"`{name}`: error: {error}" for name, error in sorted(r.errors.items())]
    return items
