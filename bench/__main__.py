"""`make bench` (python -m bench): measure the stack against the usual alternatives in one run on
this machine, print the table with ratios and write it to bench/results.md.

Each benchmark is a module of this package named for what it measures (BENCHMARKS, in the
table's order), with its measurement, its rows and their details; each row has a name
(``cold-build``, ``idle-memory``, ...) that the docs cite.

Builds the stack from a temporary copy of the project under its own image prefix and compose
project (and a second compose project for the builds' second-project figure and the team stack),
so the user's images, containers and files are never touched, and removes all it created (the
stack's images and both projects' own), also on failure or Ctrl-C. A figure that misses its
target is reported, never an error: this is a benchmark, not a test. Exit status 1 only when the
benchmark itself could not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import time
from pathlib import Path

import docker

from bench import builds, dask_search, release, schedules, stack_services, team, training_loop
from bench.measure import build_stack, repo_commit
from bench.table import Row, document, table_markdown
from bench.workspace import REPO_ROOT, BenchError, Workspace, log

# The benchmarks in the table's order. Each module has NAME (what --only takes), ROWS (its rows'
# names, in order), measure(workspace, args) -> results, rows(results), details(results) (list
# items for the results file) and describe(args, results) (how much it measured)
BENCHMARKS = (builds, stack_services, dask_search, team, training_loop, release, schedules)
BY_NAME = {benchmark.NAME: benchmark for benchmark in BENCHMARKS}

# Seconds kept for everything after the cold builds (rebuilds, the second project, make up,
# probes, the default server, the Dask searches, cleanup): about 9 minutes here; 12 for a loaded
# machine
SERVICES_RESERVE_S = 720
# A figure whose benchmark started while the 1-minute load average was above this is marked in
# the table: on this 2-core machine it means something besides the benchmark was running
LOAD_LIMIT = 1.5
# How long each benchmark waits for the load of the run's previous one to fade below the limit
LOAD_SETTLE_S = 90


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options; ``benchmarks`` (the chosen modules, in the table's order) and ``output``
    are filled in from ``--only`` and ``--output``."""
    parser = argparse.ArgumentParser(
        prog="make bench",
        description="Measure the stack against the usual alternatives; write bench/results.md.",
    )
    parser.add_argument(
        "--build-reps",
        type=int,
        default=3,
        help="most cold builds, rebuilds and second-project builds, each",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=19,
        help="time budget: fewer cold builds when the machine is slow",
    )
    parser.add_argument("--up-reps", type=int, default=3, help="timed `make up` runs")
    parser.add_argument("--run-reps", type=int, default=7, help="compose run / docker run pairs")
    parser.add_argument("--kernel-reps", type=int, default=5, help="kernels started")
    parser.add_argument("--calls", type=int, default=1000, help="log_metric calls per server")
    parser.add_argument("--batches", type=int, default=20, help="log_batch calls per server")
    parser.add_argument(
        "--dask-reps",
        type=int,
        default=2,
        help="searches per setting (one process, joblib n_jobs=2, 1 and 2 workers)",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=30, help="wait after start before reading idle RSS"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(BY_NAME),
        metavar="NAME",
        help="run only these benchmarks ("
        + "; ".join(f"{b.NAME}: {', '.join(b.ROWS)}" for b in BENCHMARKS)
        + "); without builds, the images are built once, with no cold builds",
    )
    parser.add_argument(
        "--loop-values", type=int, default=10_000, help="training-loop: values the loop logs"
    )
    parser.add_argument(
        "--team-reps", type=int, default=3, help="team: probe rounds, stacks alternating"
    )
    parser.add_argument(
        "--team-calls", type=int, default=300, help="team: log_metric calls per probe"
    )
    parser.add_argument(
        "--team-batches", type=int, default=10, help="team: log_batch calls per probe"
    )
    parser.add_argument(
        "--schedule-runs", type=int, default=3, help="schedules: scheduled runs (one a minute)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="the results file (default bench/results.md; with --only, "
        "bench/results-<names>.md)",
    )
    args = parser.parse_args(argv)
    args.benchmarks = [b for b in BENCHMARKS if not args.only or b.NAME in args.only]
    if args.output is None:
        names = "-".join(b.NAME for b in args.benchmarks)
        name = "results.md" if not args.only else f"results-{names}.md"
        args.output = REPO_ROOT / "bench" / name
    return args


def machine(client: docker.DockerClient) -> dict[str, str]:
    """The engine's host as Docker reports it: cores, memory, engine, storage, cgroup."""
    info = client.info()
    return {
        "cores": str(info["NCPU"]),
        "memory": f"{info['MemTotal'] / 2**30:.1f} GiB",
        "Docker Engine": info["ServerVersion"],
        "storage": info["Driver"],
        "cgroup": f"v{info.get('CgroupVersion', '1')}",
    }


def load_text(load: tuple[float, float, float]) -> str:
    """The load averages over 1, 5 and 15 minutes (``os.getloadavg()``) as ``2.4 / 3.0 / 4.6``:
    how busy the shared machine was (runnable processes; this machine has ``cores`` of them)."""
    return " / ".join(f"{value:.1f}" for value in load)


def settled_load() -> float:
    """The 1-minute load average once it is at most LOAD_LIMIT, or after LOAD_SETTLE_S seconds
    of waiting for that (``os.getloadavg()[0]``: runnable processes, averaged)."""
    deadline = time.monotonic() + LOAD_SETTLE_S
    while os.getloadavg()[0] > LOAD_LIMIT and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def mark_loaded(table: list[Row], load: float) -> None:
    """Appends ``(load 2.3)`` to the "met?" cell of every row of ``table`` (one benchmark's)
    when ``load``, the load average at that benchmark's start, was above LOAD_LIMIT."""
    if load > LOAD_LIMIT:
        for row in table:
            row.met += f" (load {load:.1f})"


def terminate(signum: int, _frame) -> None:
    """SIGTERM as Ctrl-C, so the cleanup in main() runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    """Run the benchmark; return the exit status (0 also when targets are missed)."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminate)
    client = docker.from_env(timeout=600)
    machine_info = machine(client)
    started = time.perf_counter()
    # The builds start no further cold-build pair that would end after this
    args.deadline = started + args.max_minutes * 60 - SERVICES_RESERVE_S
    load_before = os.getloadavg()
    workspace = Workspace.create(client)
    log(
        f"run {workspace.run_id}: project copy {workspace.directory}, images "
        f"{workspace.prefix}/*, {workspace.project}-* and {workspace.second_project}-*"
    )
    # Per benchmark that ran: its load average at the start, its results
    loads: dict[str, float] = {}
    results: dict[str, object] = {}
    try:
        if builds not in args.benchmarks:
            log("building the images once (no cold builds)")
            # On a base of the run's own, so every layer, intermediate ones too, is removed at
            # the end (a build on the user's base would leave its layers)
            workspace.base_image = workspace.fresh_base("only")
            log(f"  {build_stack(workspace).seconds:.0f} s")
        for benchmark in args.benchmarks:
            loads[benchmark.NAME] = settled_load()
            log(f"{benchmark.NAME}: load average {loads[benchmark.NAME]:.1f} at the start")
            results[benchmark.NAME] = benchmark.measure(workspace, args)
    except BenchError as error:
        log(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        log("removing the containers, volumes, networks and images of this run")
        for problem in workspace.cleanup():
            log(f"warning: not removed: {problem}")
        client.close()

    minutes = (time.perf_counter() - started) / 60
    table: list[Row] = []
    details: list[str] = []
    for benchmark in args.benchmarks:
        rows = benchmark.rows(results[benchmark.NAME])
        mark_loaded(rows, loads[benchmark.NAME])
        table += rows
        details += benchmark.details(results[benchmark.NAME])
    only = f" ({', '.join(b.NAME for b in args.benchmarks)} only)" if args.only else ""
    settings = (
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on commit "
        f"{repo_commit(REPO_ROOT)} in {minutes:.0f} min{only}; "
        + "; ".join(b.describe(args, results[b.NAME]) for b in args.benchmarks)
        + f"; idle RSS read {args.idle_seconds:.0f} s after start; load average "
        f"{load_text(load_before)} before, {load_text(os.getloadavg())} after; at the start of "
        f"each benchmark (after up to {LOAD_SETTLE_S} s for the previous one's load to fade): "
        + ", ".join(f"{name} {load:.1f}" for name, load in loads.items())
        + ". A figure marked (load N) was measured in a benchmark that started above "
        f"{LOAD_LIMIT}: the machine was busy with more than this run."
    )
    args.output.write_text(document(machine_info, settings, table, details))
    print(f"\nmlstack benchmark ({', '.join(f'{k} {v}' for k, v in machine_info.items())})\n")
    print(table_markdown(table))
    print(f"\nwritten to {args.output} with the details ({minutes:.0f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
