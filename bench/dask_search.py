"""The Dask benchmark: the same hyperparameter search (the code sweep.py runs) on the stack's
Dask cluster with 2 workers and with 1, with joblib's ``n_jobs=2`` in one runner, and in one
process, alternating so a busy spell of the shared machine hits every setting.

- ``dask-search``: the search's wall time per setting; speed-up of 2 workers over 1 and over
  joblib.
- ``dask-idle-memory``: the cluster (scheduler and 2 workers) at rest.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

from docker.models.containers import Container

from bench.measure import attempt, last_json_line, median_rss, settle
from bench.table import Row, median, ratio, ratio_text, seconds, size, verdict
from bench.workspace import BenchError, Workspace, log

NAME = "dask-search"
ROWS = ("dask-search", "dask-idle-memory")

# The search: the code sweep.py runs (cross_validate_grid) on a grid large enough for
# real work (15 candidates x 5 folds = 75 fits of about 0.3 to 2.5 CPU seconds each here: about
# 90 s in one process; 12 candidates took 58.8 s on a quiet machine, under the 60), many
# fits of similar size so the last one leaves a worker idle briefly
DASK_GRID = {"n_estimators": [500, 1000, 1500, 2000, 2500], "max_depth": [4, 8, 16]}
DASK_FOLDS = 5

# The settings, by name: the Dask workers `make up` starts (0: no cluster, the
# search runs in the runner) and, without a cluster, joblib's n_jobs (1: in one process)
DASK_SETTINGS = {
    "local": (0, 1),
    "joblib n_jobs=2": (0, 2),
    "1 worker": (1, 1),
    "2 workers": (2, 1),
}

# The targets: 2 workers at least this many times as fast as 1 (on 2 cores), and as fast as
# joblib's n_jobs=2 in one runner within this factor
DASK_SPEEDUP_TARGET = 1.7
DASK_JOBLIB_TARGET = 0.9


@dataclass
class DaskResults:
    """The raw numbers: per setting (DASK_SETTINGS' names) each search's seconds and
    bench/probe_dask.py's result; the containers' RSS (bytes) idle and after the searches; the
    seconds of each start or rescaling of the cluster; why it failed."""

    search_s: dict[str, list[float]] = field(default_factory=dict)
    probes: dict[str, list[dict]] = field(default_factory=dict)
    idle_rss_bytes: dict[str, int] = field(default_factory=dict)
    busy_rss_bytes: dict[str, int] = field(default_factory=dict)
    up_s: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def describe(args: argparse.Namespace, results: DaskResults) -> str:
    """How much was measured, for the results file's settings line."""
    return f"{args.dask_reps} searches per Dask setting"


def measure(ws: Workspace, args: argparse.Namespace) -> DaskResults:
    """The searches (``args.dask_reps`` per setting) and the cluster's memory; a failure is
    kept in ``errors``."""
    results = DaskResults()
    attempt(
        results.errors,
        "dask-search",
        "Dask: the same search in one process, with joblib n_jobs=2, on 1 and on 2 workers",
        lambda: run_dask(ws, results, reps=args.dask_reps, idle_s=args.idle_seconds),
    )
    return results


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


def scale_dask(ws: Workspace, workers: int, results: DaskResults) -> None:
    """Start or rescale the cluster to ``workers`` with make up, the step `make up
    WORKERS=N` runs once the images are built; returns when every container is healthy. The
    seconds go to ``results.up_s`` under ``"to N"``."""
    seconds, _ = ws.run(["python3", "scripts/stackctl", "up", str(workers)], timeout=600)
    results.up_s.setdefault(f"to {workers}", []).append(seconds)
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


def run_dask(ws: Workspace, results: DaskResults, reps: int, idle_s: float) -> None:
    """The searches and the cluster's memory on the run's stack: `make up WORKERS=2`, the
    cluster's idle RSS after ``idle_s`` seconds, then ``reps`` rounds of the same search
    (DASK_GRID, DASK_FOLDS) on 2 workers, on 1 worker (rescaled with `make up WORKERS=1`'s
    script) and locally in one process, alternating so a busy spell of the shared machine hits
    every setting; the cluster is scaled back to 2 between rounds. Then the RSS after the
    searches (scheduler, worker 1). Each probe result is kept for the details."""
    log("make up WORKERS=2 (a Dask scheduler and 2 workers)")
    seconds, _ = ws.run(["make", "--no-print-directory", "up", "WORKERS=2"], timeout=900)
    results.up_s.setdefault("make up WORKERS=2", []).append(seconds)
    settle(time.perf_counter(), idle_s)
    results.idle_rss_bytes = median_rss(dask_containers(ws))
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
            results.probes.setdefault(name, []).append(probe)
            results.search_s.setdefault(name, []).append(probe["seconds"])
            log(f"  {probe['seconds']:.1f} s")
    results.busy_rss_bytes = median_rss(dask_containers(ws), samples=1)
    ws.run(["python3", "scripts/stackctl", "up", "0"], timeout=600)


def rows(r: DaskResults) -> list[Row]:
    """The table's rows of this benchmark (ROWS, in that order)."""
    one, two, local, jobs = (
        median(r.search_s.get(name, []))
        for name in ("1 worker", "2 workers", "local", "joblib n_jobs=2")
    )
    speedup, against_joblib = ratio(one, two), ratio(jobs, two)
    idle = r.idle_rss_bytes
    table = [
        Row(
            "dask-search",
            f"Dask: the same search ({grid_text(DASK_GRID)}), 2 workers / 1 worker / joblib "
            "`n_jobs=2` in one runner / locally in one process; speed-up of 2 workers over 1 "
            "worker and over joblib",
            f"{seconds(two)} / {seconds(one)} / {seconds(jobs)} / {seconds(local)}",
            f"{seconds(one)} (1 worker) / {seconds(jobs)} (joblib `n_jobs=2`)",
            "—" if speedup is None else f"{speedup:.2f} / {ratio_text(against_joblib)}",
            f"≥ {DASK_SPEEDUP_TARGET} / ≥ {DASK_JOBLIB_TARGET}; one process ≥ 60 s",
            verdict(
                None
                if speedup is None or against_joblib is None
                else speedup >= DASK_SPEEDUP_TARGET
                and against_joblib >= DASK_JOBLIB_TARGET
                and (local or 0) >= 60
            ),
        ),
        Row(
            "dask-idle-memory",
            "idle RSS of the Dask cluster (scheduler + 2 workers)",
            size(sum(idle.values())) if idle else "—",
            "—",
            "—",
            "report",
            "—",
        ),
    ]
    if r.errors and table[0].met == "—":
        table[0].met = "error"
    return table


def grid_text(grid: dict[str, list[int]]) -> str:
    """A grid and the folds as ``n_estimators 150, 300 × max_depth 4, 8 × 5 folds = 20 fits``."""
    fits = DASK_FOLDS
    for values in grid.values():
        fits *= len(values)
    parts = [f"{name} {', '.join(map(str, values))}" for name, values in grid.items()]
    return f"{' × '.join(parts)} × {DASK_FOLDS} folds = {fits} fits"


def search_parts(probe: dict) -> dict[str, float]:
    """Where one search's time went (bench/probe_dask.py's result), in seconds unless named:
    ``fits`` (inside model.fit, summed), ``tasks`` (Dask tasks), ``compute``
    (the tasks' computation, summed: fits, predictions, scores), ``busy`` (compute ÷ (workers
    × wall): the share of the workers' time spent computing), ``first`` (search start to the
    first task computing: joblib, scheduler, transfer) and ``tail`` (last task done to the
    search's end)."""
    parts = {"wall": probe["seconds"], "fits": probe["fit_s"]}
    tasks = probe.get("tasks") or []
    if tasks:
        compute = sum(task["stop"] - task["start"] for task in tasks)
        parts |= {
            "tasks": len(tasks),
            "compute": compute,
            "busy": compute / (max(probe["workers"], 1) * probe["seconds"]),
            "first": min(task["start"] for task in tasks) - probe["start"],
            "tail": probe["stop"] - max(task["stop"] for task in tasks),
        }
    return parts


def details(r: DaskResults) -> list[str]:
    """Where the searches' time goes, as the results file's list items (medians over the
    repetitions)."""
    items = []
    for name, probes in r.probes.items():
        parts = [search_parts(probe) for probe in probes]
        wall = ", ".join(f"{p['wall']:.1f}" for p in parts)
        text = (
            f"`dask-search`, {name}: runs {wall} s; inside `model.fit` "
            f"{seconds(median([p['fits'] for p in parts]))} of the "
            f"{probes[0]['fits']} fits together"
        )
        if probes[0].get("jobs"):
            text += f"; joblib ran {probes[0]['jobs']} processes"
        if "tasks" in parts[0]:
            text += (
                f"; {median([p['tasks'] for p in parts]):.0f} Dask tasks "
                f"computing {seconds(median([p['compute'] for p in parts]))} together, the "
                f"workers busy {median([p['busy'] for p in parts]):.0%} of the wall time; first "
                f"task computing {seconds(median([p['first'] for p in parts]))} after the start, "
                f"last done {seconds(median([p['tail'] for p in parts]))} before the end"
            )
        cpu = [sum(probe["cpu_s"].values()) for probe in probes]
        text += (
            f"; CPU time of the fitting processes {seconds(median(cpu))}, i.e. "
            f"{median([c / p['wall'] for c, p in zip(cpu, parts)]):.2f} cores on average "
            "(what the shared machine gave them)"
        )
        warmup = probes[0]["warmup_s"]
        text += (
            "; first use of each process (imports, data; before the timed search): "
            + ", ".join(f"{value:.1f}" for value in warmup.values())
            + " s"
        )
        items.append(text)
    cores = {
        name: median([sum(p["cpu_s"].values()) / p["seconds"] for p in probes])
        for name, probes in r.probes.items()
    }
    one, two = median(r.search_s.get("1 worker", [])), median(r.search_s.get("2 workers", []))
    if one and two and cores.get("1 worker") and cores.get("2 workers"):
        share = cores["2 workers"] / cores["1 worker"]
        items.append(
            f"`dask-search`, the machine's share: 2 workers got {share:.2f} times the cores 1 "
            f"worker got ({cores['2 workers']:.2f} against {cores['1 worker']:.2f}); the "
            f"speed-up per core given, {one / two / share:.2f}, is what is left of the scaling "
            "when the machine's load is set aside (1.00: no loss to Dask)"
        )
    if r.up_s:
        parts = ", ".join(
            f"{what} {', '.join(f'{v:.1f}' for v in values)} s" for what, values in r.up_s.items()
        )
        items.append(f"`dask-search`: cluster start and rescaling (until healthy): {parts}")
    for label, values in (
        ("idle", r.idle_rss_bytes),
        ("after the searches", r.busy_rss_bytes),
    ):
        if values:
            parts = ", ".join(f"{name} {size(value)}" for name, value in values.items())
            items.append(f"`dask-idle-memory`: RSS {label}: {parts}")
    items += [f"`{name}`: error: {error}" for name, error in sorted(r.errors.items())]
    return items
