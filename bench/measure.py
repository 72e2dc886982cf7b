"""What the benchmarks share to measure: timed builds (make build's progress lines), a tracking
server started alone, start-up timelines from Docker's timestamps, containers' RSS, the probes
run in the runner, image layers, and one measurement's failure kept for the table. Every one
runs in the benchmark's own workspace (bench/workspace.py) and leaves its containers to the
workspace's cleanup."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from docker.models.containers import Container

from bench.workspace import SERVICES, BenchError, Workspace, group_process, log

# Seconds a fresh container may take to answer /health before the benchmark gives up on it
HEALTH_DEADLINE_S = 180


@dataclass
class Build:
    """One run of make build, read from its output lines as they came.

    Attributes:
        seconds: wall time of the whole script (the Debian base check and CA copy included).
        images_s: per image (display names of ``Workspace.images``), seconds from its
            ``build: <image> (FROM ...)`` line to its ``ready`` line, in build order.
        levels: the images in the order they were built, those built side by side together.
        rebuilt: the images with at least one RUN/COPY/ADD step not from the layer cache.
    """

    seconds: float
    images_s: dict[str, float]
    levels: list[list[str]]
    rebuilt: list[str]


def build_stack(ws: Workspace, project: str | None = None) -> Build:
    """Run the copy's make build with no argument, as `make build` does: the stack's
    shared images and the own images of ``project`` (a compose project name, given to the script
    as COMPOSE_PROJECT_NAME; default the run's project).

    Returns:
        The build's wall time and breakdown (see ``Build``), timed from the lines the script
        prints: ``build: <image> (FROM ...)``, ``build: <image> step <n>: <instruction>`` for a
        step not from the cache, ``build: <image> ready in <n> s``.

    Raises:
        BenchError: the build failed, with its output's tail.
    """
    names = {ref: name for name, ref in ws.images(project).items()}
    started: dict[str, float] = {}
    ready: dict[str, float] = {}
    rebuilt: set[str] = set()
    output: list[str] = []
    start = time.perf_counter()
    with group_process(
        ["python3", "scripts/stackctl", "build"], ws.directory, ws.env(project)
    ) as process:
        for line in process.stdout:
            output.append(line)
            found = re.match(r"build: (\S+) (\(FROM |step \S+: |ready in )", line)
            if not found or found[1] not in names:
                continue
            name, what = names[found[1]], found[2]
            if what.startswith("(FROM"):
                started[name] = time.perf_counter()
            elif what.startswith("step"):
                rebuilt.add(name)
            else:
                ready[name] = time.perf_counter()
        process.wait()
    total = time.perf_counter() - start
    if process.returncode != 0:
        raise BenchError("make build failed:\n" + "".join(output)[-3000:])
    missing = [name for name in names.values() if name not in ready]
    if missing:
        raise BenchError(f"make build did not say it built {', '.join(missing)}")
    ws.record_images(*names)
    order = sorted(started, key=started.get)
    return Build(
        seconds=total,
        images_s={name: ready[name] - started[name] for name in order},
        levels=side_by_side(order, started, ready),
        rebuilt=[name for name in order if name in rebuilt],
    )


def side_by_side(
    order: list[str], started: dict[str, float], ready: dict[str, float]
) -> list[list[str]]:
    """Group images (in ``order`` of their start) whose builds overlapped in time: each group
    starts after every build of the group before it was ready (times in perf_counter seconds)."""
    levels: list[list[str]] = []
    level_end = float("-inf")
    for name in order:
        if not levels or started[name] >= level_end:
            levels.append([])
        levels[-1].append(name)
        level_end = max(level_end, ready[name])
    return levels


def wait_for_health(url: str, container: Container, started: float) -> float:
    """Poll ``url`` every 50 ms until it answers 200.

    Returns:
        Seconds from ``started`` (a time.perf_counter value) to the first 200.

    Raises:
        BenchError: the container stopped, or no 200 within HEALTH_DEADLINE_S.
    """
    session = requests.Session()
    while time.perf_counter() - started < HEALTH_DEADLINE_S:
        try:
            if session.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - started
        except requests.RequestException:
            pass
        container.reload()
        if container.status not in ("created", "running"):
            raise BenchError(f"{url} stopped:\n{container.logs().decode()[-2000:]}")
        time.sleep(0.05)
    raise BenchError(f"{url} did not answer in {HEALTH_DEADLINE_S} s")


def start_mlflow(
    ws: Workspace,
    volume: str,
    environment: dict[str, str] | None = None,
    network: str | None = None,
) -> tuple[Container, float]:
    """Start ``mlflow server`` itself (not the image's start script) from the stack's mlflow
    image, with ``volume`` on /data and port 5000 published on a free loopback port.

    Returns:
        The container (labelled for cleanup) and the seconds from its start to /health ok.
    """
    container = ws.client.containers.create(
        ws.image("mlflow"),
        command=["mlflow", "server"],
        environment=environment or {},
        volumes={volume: {"bind": "/data", "mode": "rw"}},
        ports={"5000/tcp": ("127.0.0.1", None)},
        network=network,
        labels=ws.labels,
    )
    started = time.perf_counter()
    container.start()
    container.reload()
    port = container.attrs["NetworkSettings"]["Ports"]["5000/tcp"][0]["HostPort"]
    return container, wait_for_health(f"http://127.0.0.1:{port}/health", container, started)


def parse_time(stamp: str) -> dt.datetime:
    """A Docker timestamp (RFC 3339 with nanoseconds, e.g. ``2026-11-20T23:04:38.794679154Z``)
    as an aware datetime, truncated to microseconds."""
    found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    if not found:
        raise ValueError(f"not a Docker timestamp: {stamp}")
    fraction = (found[2] or "0")[:6].ljust(6, "0")
    zone = "+00:00" if found[3] == "Z" else found[3]
    return dt.datetime.fromisoformat(f"{found[1]}.{fraction}{zone}")


def log_line_time(container: Container, pattern: str) -> dt.datetime | None:
    """When the container first logged a line matching ``pattern`` (regex), or None."""
    for line in container.logs(timestamps=True).decode(errors="replace").splitlines():
        stamp, _, text = line.partition(" ")
        if re.search(pattern, text):
            return parse_time(stamp)
    return None


def server_profile(container: Container, since: dt.datetime) -> dict[str, float]:
    """Where an MLflow container's start went, in seconds after ``since``: the container
    started, Uvicorn listening (the server's own log), and the first passing health check."""
    container.reload()
    state = container.attrs["State"]
    profile = {"started": (parse_time(state["StartedAt"]) - since).total_seconds()}
    listening = log_line_time(container, r"Uvicorn running on")
    if listening:
        profile["listening"] = (listening - since).total_seconds()
    passed = [
        parse_time(c["End"]) for c in state.get("Health", {}).get("Log", []) if not c["ExitCode"]
    ]
    if passed:
        profile["healthy"] = (min(passed) - since).total_seconds()
    return profile


def service_container(ws: Workspace, service: str) -> Container:
    """The running container of one compose service of the workspace's project."""
    _, output = ws.compose("ps", "--quiet", service)
    ids = output.split()
    if not ids:
        raise BenchError(f"service {service} has no container")
    return ws.client.containers.get(ids[-1])


def make_up_profile(ws: Workspace, since: dt.datetime) -> dict[str, float]:
    """After `make up`: per service, seconds from make's start to the container's start, to its
    server listening (from its log) and to its first passing health check."""
    patterns = {"mlflow": r"Uvicorn running on", "jupyter": r"Jupyter Server .* is running at"}
    profile: dict[str, float] = {}
    for service in SERVICES:
        container = service_container(ws, service)
        state = container.attrs["State"]
        profile[f"{service} started"] = (parse_time(state["StartedAt"]) - since).total_seconds()
        listening = log_line_time(container, patterns[service])
        if listening:
            profile[f"{service} listening"] = (listening - since).total_seconds()
        checks = state.get("Health", {}).get("Log", [])
        passed = [parse_time(c["End"]) for c in checks if not c["ExitCode"]]
        if passed:
            profile[f"{service} healthy"] = (min(passed) - since).total_seconds()
    return profile


def make_up(ws: Workspace) -> tuple[float, dict[str, float]]:
    """`make up` in the copy (images already built), timed until it returns (all healthy).

    Returns:
        Seconds, and the profile of where they went (see ``make_up_profile``).
    """
    since = dt.datetime.now(dt.timezone.utc)
    seconds, _ = ws.run(["make", "--no-print-directory", "up"], timeout=600)
    return seconds, make_up_profile(ws, since)


def rss_bytes(container: Container) -> int:
    """Resident anonymous memory of a container, in bytes, from its memory cgroup as the
    engine reports it (``docker stats``): cgroup v1 ``total_rss``, cgroup v2 ``anon``."""
    stats = container.stats(stream=False, one_shot=True)["memory_stats"].get("stats", {})
    for key in ("total_rss", "rss", "anon"):
        if key in stats:
            return int(stats[key])
    raise BenchError(f"the engine reports no RSS for {container.name}: {sorted(stats)}")


def median_rss(containers: dict[str, Container], samples: int = 5) -> dict[str, int]:
    """Median over ``samples`` readings, one second apart, of each container's RSS (bytes),
    under the same names as ``containers``."""
    readings: dict[str, list[int]] = {name: [] for name in containers}
    for sample in range(samples):
        if sample:
            time.sleep(1)
        for name, container in containers.items():
            readings[name].append(rss_bytes(container))
    return {name: int(statistics.median(values)) for name, values in readings.items()}


def settle(since: float, idle_s: float) -> None:
    """Sleep until ``idle_s`` seconds have passed since ``since`` (time.perf_counter)."""
    time.sleep(max(0.0, idle_s - (time.perf_counter() - since)))


def last_json_line(output: str) -> dict:
    """The last line of ``output`` that is a JSON object (probes print their result last)."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"no JSON result in the probe's output:\n{output[-2000:]}")


def probe_logging(ws: Workspace, uri: str, calls: int, batches: int) -> dict:
    """bench/probe_mlflow.py in a runner container (`docker compose run`) against the tracking
    server at ``uri`` as the runner sees it: its JSON (seconds per call of log_metric,
    log_batch, a bare /health and the raw log-metric request)."""
    args = ["run", "--rm", "-T", "bash", "python", "bench/probe_mlflow.py", "--uri", uri]
    _, output = ws.compose(*args, "--calls", str(calls), "--batches", str(batches), timeout=1200)
    return last_json_line(output)


def layers(ws: Workspace, ref: str) -> list[tuple[str, int, str]]:
    """The layers of an image, oldest first: (identity, bytes, the instruction that made it).

    The identity hashes the image's history up to and including that entry (creation time,
    instruction, size), so two images share a layer exactly when one was built FROM the other
    (their history prefix is the same); a rebuilt layer gets a new creation time.
    """
    chain = hashlib.sha256()
    result = []
    for entry in reversed(ws.client.api.history(ref)):
        chain.update(json.dumps([entry["Created"], entry["CreatedBy"], entry["Size"]]).encode())
        result.append((chain.hexdigest(), int(entry["Size"]), entry["CreatedBy"]))
    return result


def attempt(errors: dict[str, str], name: str, what: str, action: Callable[[], object]) -> None:
    """Run one measurement; a failure is logged and kept in ``errors`` under ``name`` (a row's
    name), for the table, instead of raised."""
    log(what)
    try:
        action()
    except BenchError as error:
        log(f"  failed: {error}")
        errors.setdefault(name, str(error).splitlines()[0])


def repo_commit(root: Path) -> str:
    """The commit the benchmark ran on (``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":!bench/results.md"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")
