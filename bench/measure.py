"""The measurements of `make bench`, each returning raw numbers (seconds, bytes, per-call
timings); bench/report.py turns them into the table. Every one runs in the benchmark's own
workspace (bench/workspace.py) and leaves its containers to the workspace's cleanup."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from docker.models.containers import Container

from bench.workspace import (
    RUN_LABEL,
    SERVICES,
    STACK_IMAGES,
    BenchError,
    Workspace,
    group_process,
    log,
)

# The baseline of figure 4, next to this file; built with the repo root as context
BASELINE_DOCKERFILE = "bench/baseline.Dockerfile"
# A small pure-Python package that no lock of the stack has, added for figure 5
ADDED_PACKAGE = "tabulate"
# Seconds a fresh container may take to answer /health before the benchmark gives up on it
HEALTH_DEADLINE_S = 180


@dataclass
class Results:
    """Everything measured in one run; lists hold one value per repetition (seconds unless the
    name says otherwise). A figure whose measurement failed has its error in ``errors``."""

    cold_stack_s: list[float] = field(default_factory=list)
    cold_stack_images_s: list[dict[str, float]] = field(default_factory=list)
    cold_baseline_s: list[float] = field(default_factory=list)
    rebuild_s: list[float] = field(default_factory=list)
    build_noop_s: float | None = None
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
    kernel: dict[str, list[float]] = field(default_factory=dict)
    stack_logging: dict = field(default_factory=dict)
    default_logging: dict = field(default_factory=dict)
    image_bytes: dict[str, int] = field(default_factory=dict)
    unique_bytes: int | None = None
    own_bytes: dict[str, int] = field(default_factory=dict)
    biggest_layers: list[tuple[str, int, str]] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)


# ---------------------------------------------------------------- builds (figures 4 and 5)


def build_stack(ws: Workspace) -> tuple[float, dict[str, float]]:
    """Run the project's scripts/build.sh in the copy (every image, in order), as `make build`.

    Returns:
        Total seconds, and seconds per image (from the ``build: <image>`` lines it prints).

    Raises:
        BenchError: the build failed, with its output's tail.
    """
    start = time.perf_counter()
    marks: list[tuple[str, float]] = []
    output: list[str] = []
    with group_process(["scripts/build.sh"], ws.directory, ws.env()) as process:
        for line in process.stdout:
            output.append(line)
            found = re.match(r"build: \S+/(\w+):", line)
            if found:
                marks.append((found[1], time.perf_counter()))
        process.wait()
    total = time.perf_counter() - start
    if process.returncode != 0:
        raise BenchError("scripts/build.sh failed:\n" + "".join(output)[-3000:])
    ends = [t for _, t in marks[1:]] + [start + total]
    per_image = {name: end - begin for (name, begin), end in zip(marks, ends)}
    ws.record_images(*(ws.image(name) for name in STACK_IMAGES))
    return total, per_image


def cold_stack_build(ws: Workspace, rep: int) -> tuple[float, dict[str, float]]:
    """Figure 4, the stack: every image built from scratch on a fresh ID of the Debian base
    (so no layer comes from the cache). The base becomes the workspace's for later builds."""
    ws.base_image = ws.fresh_base(f"cold-stack-{rep}")
    return build_stack(ws)


def cold_baseline_build(ws: Workspace, rep: int, mlflow_version: str) -> float:
    """Figure 4, the baseline: bench/baseline.Dockerfile built with --no-cache on a fresh ID of
    the Debian base, with the same extra CA certificates (.build/, written by build.sh).

    Returns:
        Seconds; the image is removed again (it is not needed afterwards).
    """
    base = ws.fresh_base(f"cold-baseline-{rep}")
    tag = f"{ws.prefix}/baseline:{rep}"
    args = ["docker", "build", "--no-cache", "--force-rm", "--quiet"]
    args += ["--file", BASELINE_DOCKERFILE, "--tag", tag]
    args += ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"MLFLOW_VERSION={mlflow_version}"]
    seconds, _ = ws.run([*args, "."], timeout=1800)
    ws.record_images(tag)
    ws.client.images.remove(tag, force=True)
    return seconds


def rebuild_after_adding_package(ws: Workspace, rep: int) -> float:
    """Figure 5: add one package to the copy's requirements.txt and rebuild, as `make build`.

    Each repetition's line carries a different comment, so the file changes every time and the
    jupyter and bash layers from ``COPY requirements.txt`` on are really rebuilt (as for a user).
    The real project's requirements.txt is never touched.
    """
    requirements = ws.directory / "requirements.txt"
    original = requirements.read_text()
    requirements.write_text(
        original + f"{ADDED_PACKAGE}  # added by make bench, repetition {rep}\n"
    )
    try:
        seconds, _ = build_stack(ws)
    finally:
        requirements.write_text(original)
    return seconds


# ---------------------------------------------------------------- servers and containers


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
    """Figures 1 and 2: bench/probe_mlflow.py in a runner container (`docker compose run`),
    against the tracking server at ``uri`` as the runner sees it."""
    args = ["run", "--rm", "-T", "bash", "python", "bench/probe_mlflow.py", "--uri", uri]
    _, output = ws.compose(*args, "--calls", str(calls), "--batches", str(batches), timeout=1200)
    return last_json_line(output)


# ---------------------------------------------------------------- disk (figure 8)


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


def disk_usage(ws: Workspace, results: Results) -> None:
    """Figure 8: the stack images' sizes, their bytes together with shared layers counted once,
    each image's own bytes (in no other image of the stack) and the biggest layers."""
    per_image = {name: layers(ws, ws.image(name)) for name in STACK_IMAGES}
    sizes: dict[str, int] = {}
    owners: dict[str, set[str]] = {}
    for name, image_layers in per_image.items():
        for identity, size, _ in image_layers:
            sizes[identity] = size
            owners.setdefault(identity, set()).add(name)
    results.image_bytes = {n: ws.client.images.get(ws.image(n)).attrs["Size"] for n in STACK_IMAGES}
    results.unique_bytes = sum(sizes.values())
    results.own_bytes = {
        name: sum(size for identity, size, _ in layers_ if owners[identity] == {name})
        for name, layers_ in per_image.items()
    }
    seen: dict[str, tuple[str, int, str]] = {}
    for name, image_layers in per_image.items():
        for identity, size, created_by in image_layers:
            if identity not in seen:
                seen[identity] = (name, size, created_by)
    results.biggest_layers = sorted(seen.values(), key=lambda item: -item[1])[:6]


# ---------------------------------------------------------------- the whole run


def run_builds(ws: Workspace, results: Results, reps: int, deadline: float) -> None:
    """Figures 4 and 5, repetitions interleaved (stack, baseline, stack, ...) so a slow spell
    of the shared machine hits both sides; afterwards the copy's images are the stack as
    committed, on the last fresh base.

    Args:
        reps: the most cold-build pairs (and rebuilds) to run; at least one pair always runs.
        deadline: time.perf_counter() value after which no further pair is started when the
            last one's duration says it would end later (a loaded machine keeps the run short).
    """
    mlflow_pin = re.search(
        r"^mlflow==(\S+)", (ws.directory / "images/mlflow/requirements.lock").read_text(), re.M
    )
    if not mlflow_pin:
        raise BenchError("images/mlflow/requirements.lock pins no mlflow version")
    for rep in range(reps):
        if (
            rep
            and time.perf_counter() + results.cold_stack_s[-1] + results.cold_baseline_s[-1]
            > deadline
        ):
            log(f"no more cold builds: another pair would overrun the time budget ({rep} done)")
            break
        log(f"cold build of the stack's images ({rep + 1}/{reps})")
        total, per_image = cold_stack_build(ws, rep)
        results.cold_stack_s.append(total)
        results.cold_stack_images_s.append(per_image)
        log(f"  {total:.0f} s; cold build of the single-Dockerfile baseline ({rep + 1}/{reps})")
        results.cold_baseline_s.append(cold_baseline_build(ws, rep, mlflow_pin[1]))
        log(f"  {results.cold_baseline_s[-1]:.0f} s")
    for rep in range(len(results.cold_stack_s)):
        log(f"rebuild after adding {ADDED_PACKAGE} to requirements.txt ({rep + 1})")
        results.rebuild_s.append(rebuild_after_adding_package(ws, rep))
        log(f"  {results.rebuild_s[-1]:.1f} s")
    # Back to the committed requirements.txt: all from the cache, the time `make up` adds
    results.build_noop_s, _ = build_stack(ws)
    log(f"build with nothing changed: {results.build_noop_s:.1f} s")


def run_services(
    ws: Workspace,
    results: Results,
    up_reps: int,
    run_reps: int,
    kernel_reps: int,
    calls: int,
    batches: int,
    idle_s: float,
) -> None:
    """Figures 6, 3, 9, 7, 1 and 2, in that order, on the stack brought up by `make up`; each
    figure's failure is recorded in ``results.errors`` and the others still run."""
    log("make up (first start: creates the MLflow database)")
    results.make_up_first_s, _ = make_up(ws)
    volume = f"{ws.project}_mlflow-data"
    for rep in range(up_reps):
        ws.run(["make", "--no-print-directory", "down"])
        log(f"mlflow server alone, on the same data ({rep + 1}/{up_reps})")
        since = dt.datetime.now(dt.timezone.utc)
        container, seconds = start_mlflow(ws, volume)
        results.server_start_s.append(seconds)
        results.server_start_profiles.append(server_profile(container, since))
        container.remove(force=True)
        log(f"  {seconds:.1f} s; make up ({rep + 1}/{up_reps})")
        seconds, profile = make_up(ws)
        up_at = time.perf_counter()
        results.make_up_s.append(seconds)
        results.make_up_profiles.append(profile)
        log(f"  {seconds:.1f} s")

    _measure(results, 3, "idle memory of the stack", lambda: _stack_rss(ws, results, up_at, idle_s))
    _measure(results, 9, "Jupyter kernel start", lambda: _kernel(ws, results, kernel_reps))
    _measure(results, 7, "compose run vs docker run", lambda: _runs(ws, results, run_reps))
    _measure(
        results,
        1,
        "log_metric and log_batch on the stack",
        lambda: results.stack_logging.update(
            probe_logging(ws, "http://mlflow:5000", calls, batches)
        ),
    )
    _measure(
        results,
        3,
        "a default mlflow server",
        lambda: _default_server(ws, results, calls, batches, idle_s),
    )


def _measure(results: Results, figure: int, what: str, action) -> None:
    """Run one measurement; a failure is logged and kept for the table instead of raised."""
    log(what)
    try:
        action()
    except BenchError as error:
        log(f"  failed: {error}")
        results.errors.setdefault(figure, str(error).splitlines()[0])


def _stack_rss(ws: Workspace, results: Results, up_at: float, idle_s: float) -> None:
    settle(up_at, idle_s)
    containers = {service: service_container(ws, service) for service in SERVICES}
    results.stack_rss_bytes = median_rss(containers)


def _kernel(ws: Workspace, results: Results, reps: int) -> None:
    _, output = ws.compose(
        "exec", "-T", "jupyter", "python", "bench/probe_kernel.py", "--reps", str(reps)
    )
    results.kernel = last_json_line(output)


def _runs(ws: Workspace, results: Results, reps: int) -> None:
    """Figure 7, alternating the two commands after one untimed run of each (page cache)."""
    label = f"{RUN_LABEL}={ws.run_id}"
    docker_run = [
        "docker",
        "run",
        "--rm",
        "--label",
        label,
        ws.image("bash"),
        "python",
        "-c",
        "pass",
    ]
    compose_run = ["docker", "compose", "run", "--rm", "bash", "python", "-c", "pass"]
    ws.run(docker_run)
    ws.run(compose_run)
    for _ in range(reps):
        results.compose_run_s.append(ws.run(compose_run)[0])
        results.docker_run_s.append(ws.run(docker_run)[0])


def _default_server(
    ws: Workspace, results: Results, calls: int, batches: int, idle_s: float
) -> None:
    """The baseline of figures 1-3: the stack's mlflow image run as a default `mlflow server`
    (4 workers, job execution on; same SQLite store on a fresh volume), on the stack's network
    so the runner reaches it like the stack's own server (by IP: the default allowed hosts)."""
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
