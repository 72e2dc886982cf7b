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
    PROJECT_SERVICES,
    RUN_LABEL,
    SERVICES,
    BenchError,
    Workspace,
    group_process,
    log,
)

# The baseline of figure 4, next to this file; built with the repo root as context
BASELINE_DOCKERFILE = "bench/baseline.Dockerfile"
# The stack's one MLflow pin (compiled from images/science/requirements.in by `make lock`): the
# baseline installs the same version
MLFLOW_LOCK = "images/science/requirements.lock"
# A small pure-Python package that no lock of the stack has, added for figure 5
ADDED_PACKAGE = "tabulate"
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


@dataclass
class Results:
    """Everything measured in one run; lists hold one value per repetition (seconds unless the
    name says otherwise). A figure whose measurement failed has its error in ``errors``. Image
    names are the display names of ``Workspace.images`` (``base`` ... ``project bash``)."""

    cold_stack_s: list[float] = field(default_factory=list)
    cold_stack_images_s: list[dict[str, float]] = field(default_factory=list)
    cold_stack_levels: list[list[str]] = field(default_factory=list)
    cold_baseline_s: list[float] = field(default_factory=list)
    mlflow_version: str = ""
    rebuild_s: list[float] = field(default_factory=list)
    rebuild_rebuilt: list[list[str]] = field(default_factory=list)
    build_noop_s: float | None = None
    build_noop_rebuilt: list[str] = field(default_factory=list)
    second_project_s: list[float] = field(default_factory=list)
    second_project_images_s: list[dict[str, float]] = field(default_factory=list)
    second_project_rebuilt: list[list[str]] = field(default_factory=list)
    second_project_levels: list[list[str]] = field(default_factory=list)
    second_project_added_bytes: int | None = None
    second_project_image_bytes: dict[str, int] = field(default_factory=dict)
    second_project_own_bytes: dict[str, int] = field(default_factory=dict)
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
    # Figure 14: bench/probe_loop.py's JSON (a training loop's logging, sync and the stack's)
    loop_logging: dict = field(default_factory=dict)
    default_logging: dict = field(default_factory=dict)
    image_bytes: dict[str, int] = field(default_factory=dict)
    unique_bytes: int | None = None
    own_bytes: dict[str, int] = field(default_factory=dict)
    biggest_layers: list[tuple[str, int, str]] = field(default_factory=list)
    dask_search_s: dict[str, list[float]] = field(default_factory=dict)
    dask_probes: dict[str, list[dict]] = field(default_factory=dict)
    dask_idle_rss_bytes: dict[str, int] = field(default_factory=dict)
    dask_busy_rss_bytes: dict[str, int] = field(default_factory=dict)
    dask_up_s: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


# ---------------------------------------------------------------- builds (figures 4, 5, 10)


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


def cold_stack_build(ws: Workspace, rep: int) -> Build:
    """Figure 4, the stack: every image, the shared ones and the run's project's own, built from
    scratch on a fresh ID of the Debian base (so no layer comes from the cache). The base
    becomes the workspace's for later builds."""
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


def build_with_requirements(ws: Workspace, extra_line: str, project: str | None = None) -> Build:
    """`build_stack` with ``extra_line`` (no newline) appended to the copy's requirements.txt,
    which is restored afterwards (the real project's file is never touched)."""
    requirements = ws.directory / "project" / "requirements.txt"
    original = requirements.read_text()
    requirements.write_text(original + extra_line + "\n")
    try:
        return build_stack(ws, project)
    finally:
        requirements.write_text(original)


def rebuild_after_adding_package(ws: Workspace, rep: int) -> Build:
    """Figure 5: add one package to the copy's requirements.txt and rebuild, as `make build`:
    only the project's own images (<project>-jupyter and -bash) should run a step.

    Each repetition's line carries a different comment, so the file changes every time and the
    project images' layers from ``COPY requirements.txt`` on are really rebuilt (as for a user).
    """
    return build_with_requirements(ws, f"{ADDED_PACKAGE}  # added by make bench, repetition {rep}")


def second_project_build(ws: Workspace, rep: int) -> Build:
    """Figure 10: `make build` of a second project on the same machine (compose project
    ``<project>-2``, the same stack version and prefix) once the first project's images exist.

    Its requirements.txt is the template's plus one comment line naming the repetition, so its
    own layers are built for real (a project's own file, not a copy of the first project's that
    the layer cache would serve); the shared stack images come from the cache.
    """
    line = f"# the second project of make bench, repetition {rep}"
    return build_with_requirements(ws, line, ws.second_project)


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


# ---------------------------------------------------------------- disk (figures 8 and 10)


def run_loop(ws: Workspace, results: Results, values: int) -> None:
    """Figure 14: bench/probe_loop.py as a job in the runner (`docker compose run`), on the
    stack `make up` starts (or finds running)."""
    ws.run(["make", "--no-print-directory", "up"], timeout=600)
    args = ["run", "--rm", "-T", "bash", "python", "bench/probe_loop.py", "--values", str(values)]
    _, output = ws.compose(*args, timeout=1800)
    results.loop_logging = last_json_line(output)


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


def own_bytes(per_image: dict[str, list[tuple[str, int, str]]]) -> dict[str, int]:
    """Per image, the bytes of the layers it adds to the image it is built on: those of its
    layers that no image of ``per_image`` with fewer layers has (image name to its ``layers``;
    base's own bytes include Debian's)."""
    creator: dict[str, str] = {}
    # From the tallest image down, so a layer ends up with the lowest image that has it
    for name, image_layers in sorted(per_image.items(), key=lambda item: -len(item[1])):
        for identity, _, _ in image_layers:
            creator[identity] = name
    return {
        name: sum(size for identity, size, _ in image_layers if creator[identity] == name)
        for name, image_layers in per_image.items()
    }


def disk_usage(ws: Workspace, results: Results) -> None:
    """Figure 8: the sizes of every image of the first project (the stack's shared images and
    its own two), their bytes together with shared layers counted once, each image's own bytes
    (see ``own_bytes``) and the biggest layers. Figure 10, when the second project was built:
    the bytes its two images add to those (layers not already present), and per image."""
    refs = ws.images()
    per_image = {name: layers(ws, ref) for name, ref in refs.items()}
    sizes = {identity: size for layers_ in per_image.values() for identity, size, _ in layers_}
    results.image_bytes = {
        name: ws.client.images.get(ref).attrs["Size"] for name, ref in refs.items()
    }
    results.unique_bytes = sum(sizes.values())
    results.own_bytes = own_bytes(per_image)
    seen: dict[str, tuple[str, int, str]] = {}
    for name, image_layers in per_image.items():
        for identity, size, created_by in image_layers:
            if identity not in seen:
                seen[identity] = (name, size, created_by)
    results.biggest_layers = sorted(seen.values(), key=lambda item: -item[1])[:6]

    if not results.second_project_s:
        return
    second_refs = {
        f"second {service}": ws.project_image(service, ws.second_project)
        for service in PROJECT_SERVICES
    }
    second = {name: layers(ws, ref) for name, ref in second_refs.items()}
    added = {
        identity: size
        for image_layers in second.values()
        for identity, size, _ in image_layers
        if identity not in sizes
    }
    results.second_project_added_bytes = sum(added.values())
    results.second_project_image_bytes = {
        name: ws.client.images.get(ref).attrs["Size"] for name, ref in second_refs.items()
    }
    results.second_project_own_bytes = {
        name: sum(size for identity, size, _ in image_layers if identity not in sizes)
        for name, image_layers in second.items()
    }


# ---------------------------------------------------------------- Dask (figures 11 and 12)

# Figure 11's search: the code sweep.py runs (cross_validate_grid) on a grid large enough for
# real work (15 candidates x 5 folds = 75 fits of about 0.3 to 2.5 CPU seconds each here: about
# 90 s in one process; 12 candidates took 58.8 s on a quiet machine, under the 60), many
# fits of similar size so the last one leaves a worker idle briefly
DASK_GRID = {"n_estimators": [500, 1000, 1500, 2000, 2500], "max_depth": [4, 8, 16]}
DASK_FOLDS = 5
# The settings of figure 11, by name: the Dask workers `make up` starts (0: no cluster, the
# search runs in the runner) and, without a cluster, joblib's n_jobs (1: in one process)
DASK_SETTINGS = {
    "local": (0, 1),
    "joblib n_jobs=2": (0, 2),
    "1 worker": (1, 1),
    "2 workers": (2, 1),
}


def dask_containers(ws: Workspace) -> dict[str, Container]:
    """The run's Dask containers by name: ``scheduler``, ``worker 1``, ``worker 2``, ... (by
    the replica number compose gives them)."""
    found = {}
    label = f"com.docker.compose.project={ws.project}"
    for container in ws.client.containers.list(filters={"label": label}):
        service = container.labels.get("com.docker.compose.service")
        number = container.labels.get("com.docker.compose.container-number", "1")
        if service == "dask-scheduler":
            found["scheduler"] = container
        elif service == "dask-worker":
            found[f"worker {number}"] = container
    return dict(sorted(found.items()))


def scale_dask(ws: Workspace, workers: int, results: Results) -> None:
    """Start or rescale the cluster to ``workers`` with make up, the step `make up
    WORKERS=N` runs once the images are built; returns when every container is healthy. The
    seconds go to ``results.dask_up_s`` under ``"to N"``."""
    seconds, _ = ws.run(["python3", "scripts/stackctl", "up", str(workers)], timeout=600)
    results.dask_up_s.setdefault(f"to {workers}", []).append(seconds)
    log(f"  cluster at {workers} worker{'s' if workers > 1 else ''} in {seconds:.1f} s")


def probe_search(
    ws: Workspace, workers: int, grid: dict[str, list[int]], folds: int, jobs: int = 1
) -> dict:
    """bench/probe_dask.py in a runner container (`docker compose run`): the search on
    ``workers`` Dask workers, or for 0 locally in the runner with joblib's ``n_jobs=jobs``."""
    args = ["run", "--rm", "-T", "bash", "python", "bench/probe_dask.py"]
    args += ["--where", "cluster" if workers else "local", "--workers", str(max(workers, 1))]
    args += ["--jobs", str(jobs)]
    for name, values in grid.items():
        args += [f"--{name.replace('_', '-')}", *map(str, values)]
    _, output = ws.compose(*args, "--folds", str(folds), timeout=1200)
    return last_json_line(output)


def run_dask(ws: Workspace, results: Results, reps: int, idle_s: float) -> None:
    """Figures 11 and 12 on the run's stack: `make up WORKERS=2`, the cluster's idle RSS after
    ``idle_s`` seconds, then ``reps`` rounds of the same search (DASK_GRID, DASK_FOLDS) on 2
    workers, on 1 worker (rescaled with `make up WORKERS=1`'s script) and locally in one
    process, alternating so a busy spell of the shared machine hits every setting; the cluster
    is scaled back to 2 between rounds. Then the RSS after the searches (scheduler, worker 1).
    Each probe result is kept for the breakdown."""
    log("make up WORKERS=2 (a Dask scheduler and 2 workers)")
    seconds, _ = ws.run(["make", "--no-print-directory", "up", "WORKERS=2"], timeout=900)
    results.dask_up_s.setdefault("make up WORKERS=2", []).append(seconds)
    settle(time.perf_counter(), idle_s)
    results.dask_idle_rss_bytes = median_rss(dask_containers(ws))
    # The cluster runs 2 workers at the start of each round; the local searches run while the
    # 1-worker cluster idles
    order = ("2 workers", "1 worker", "local", "joblib n_jobs=2")
    for rep in range(reps):
        if rep:
            scale_dask(ws, 2, results)
        for name in order:
            workers, jobs = DASK_SETTINGS[name]
            if workers == 1:
                scale_dask(ws, 1, results)
            log(f"search, {name} ({rep + 1}/{reps})")
            try:
                probe = probe_search(ws, workers, DASK_GRID, DASK_FOLDS, jobs)
            except BenchError as error:
                # Once more on a shared machine, after `make up` brought the cluster back
                log(f"  failed, once more: {str(error).splitlines()[-1]}")
                scale_dask(ws, max(workers, 1), results)
                probe = probe_search(ws, workers, DASK_GRID, DASK_FOLDS, jobs)
            results.dask_probes.setdefault(name, []).append(probe)
            results.dask_search_s.setdefault(name, []).append(probe["seconds"])
            log(f"  {probe['seconds']:.1f} s")
    results.dask_busy_rss_bytes = median_rss(dask_containers(ws), samples=1)
    ws.run(["python3", "scripts/stackctl", "up", "0"], timeout=600)


# ---------------------------------------------------------------- the whole run


def mlflow_version(ws: Workspace) -> str:
    """The stack's MLflow version, the ``mlflow==`` pin of MLFLOW_LOCK in the copy.

    Raises:
        BenchError: the lock pins no mlflow.
    """
    pin = re.search(r"^mlflow==([^\s;]+)", (ws.directory / MLFLOW_LOCK).read_text(), re.M)
    if not pin:
        raise BenchError(f"{MLFLOW_LOCK} pins no mlflow version")
    return pin[1]


def run_builds(ws: Workspace, results: Results, reps: int, deadline: float) -> None:
    """Figures 4, 5 and 10. The cold builds are interleaved (stack, baseline, stack, ...) so a
    slow spell of the shared machine hits both sides; then the rebuilds after adding a package,
    one build with nothing changed, and the second project's builds. Afterwards the copy's
    images are the stack and the run's project as committed, on the last fresh base, beside the
    second project's.

    Args:
        reps: the most cold-build pairs (and rebuilds, second-project builds) to run; at least
            one pair always runs.
        deadline: time.perf_counter() value after which no further pair is started when the
            last one's duration says it would end later (a loaded machine keeps the run short).
    """
    results.mlflow_version = mlflow_version(ws)
    for rep in range(reps):
        if (
            rep
            and time.perf_counter() + results.cold_stack_s[-1] + results.cold_baseline_s[-1]
            > deadline
        ):
            log(f"no more cold builds: another pair would overrun the time budget ({rep} done)")
            break
        log(f"cold build of the stack's and the project's images ({rep + 1}/{reps})")
        build = cold_stack_build(ws, rep)
        results.cold_stack_s.append(build.seconds)
        results.cold_stack_images_s.append(build.images_s)
        results.cold_stack_levels = build.levels
        log(f"  {build.seconds:.0f} s; cold build of the one-Dockerfile baseline ({rep + 1})")
        results.cold_baseline_s.append(cold_baseline_build(ws, rep, results.mlflow_version))
        log(f"  {results.cold_baseline_s[-1]:.0f} s")
    for rep in range(len(results.cold_stack_s)):
        log(f"rebuild after adding {ADDED_PACKAGE} to requirements.txt ({rep + 1})")
        build = rebuild_after_adding_package(ws, rep)
        results.rebuild_s.append(build.seconds)
        results.rebuild_rebuilt.append(build.rebuilt)
        log(f"  {build.seconds:.1f} s, rebuilt: {', '.join(build.rebuilt) or 'nothing'}")
    # Back to the committed requirements.txt: the time `make up` adds to a start
    build = build_stack(ws)
    results.build_noop_s, results.build_noop_rebuilt = build.seconds, build.rebuilt
    log(f"build with nothing changed: {build.seconds:.1f} s")
    for rep in range(len(results.cold_stack_s)):
        log(f"build of a second project, {ws.second_project} ({rep + 1})")
        build = second_project_build(ws, rep)
        results.second_project_s.append(build.seconds)
        results.second_project_images_s.append(build.images_s)
        results.second_project_rebuilt.append(build.rebuilt)
        results.second_project_levels = build.levels
        log(f"  {build.seconds:.1f} s, rebuilt: {', '.join(build.rebuilt) or 'nothing'}")


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


# Figure 7's breakdown: what parts of `docker compose run` cost, each timed like the figure
COMPOSE_RUN_PARTS = {
    # Compose reads and checks the project (compose.yaml, .env, env files), starts nothing
    "`docker compose config --quiet`": "config --quiet",
    # The same run without the dependency on mlflow (compose neither checks nor starts it)
    "`docker compose run --rm --no-deps`": "run --rm --no-deps bash python -c pass",
}


def _runs(ws: Workspace, results: Results, reps: int) -> None:
    """Figure 7: `docker compose run --rm bash` against `docker run --rm` of the same image
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
