"""`make bench` (python -m bench): measure the stack against the usual alternatives in one run on
this machine, print the table with ratios and write it to bench/results.md.

Builds the stack from a temporary copy of the project under its own image prefix and compose
project (and a second compose project for figure 10), so the user's images, containers and files
are never touched, and removes all it created (the stack's images and both projects' own), also
on failure or Ctrl-C. A figure that misses its target is reported, never an error:
this is a benchmark, not a test. Exit status 1 only when the benchmark itself could not run.
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

from bench.measure import (
    Results,
    _measure,
    build_stack,
    disk_usage,
    repo_commit,
    run_builds,
    run_dask,
    run_loop,
    run_services,
)
from bench.release import ReleaseResults, release_breakdown, release_rows, run_release
from bench.report import document, rows, table_markdown
from bench.schedule import ScheduleResults, run_schedule, schedule_rows
from bench.team import TeamResults, run_team, team_breakdown, team_rows
from bench.workspace import BenchError, Workspace, log
from tests.helpers import REPO_ROOT

# Seconds kept for everything after the cold builds (rebuilds, the second project, make up,
# probes, the default server, the Dask searches, cleanup): about 9 minutes here; 12 for a loaded
# machine
SERVICES_RESERVE_S = 720
# The figures by the part of the run that measures them (--only runs the parts it names)
PARTS = {
    "builds": (4, 5, 8, 10),
    "services": (1, 2, 3, 6, 7, 9),
    "dask": (11, 12),
    "team": (13,),
    "loop": (14,),
    "release": (15, 16, 17, 18),
    "schedule": (19, 20),
}
FIGURES = sorted(number for numbers in PARTS.values() for number in numbers)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options; the defaults keep a run under 20 minutes on 2 cores."""
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
        type=int,
        nargs="+",
        choices=FIGURES,
        metavar="N",
        help="measure only these figures (and those measured with them: "
        + "; ".join(" ".join(map(str, numbers)) for numbers in PARTS.values())
        + "); the images are then built once, without the cold builds",
    )
    parser.add_argument(
        "--loop-values", type=int, default=10_000, help="figure 14: values the loop logs"
    )
    parser.add_argument(
        "--team-reps", type=int, default=3, help="figure 13: probe rounds, stacks alternating"
    )
    parser.add_argument(
        "--team-calls", type=int, default=300, help="figure 13: log_metric calls per probe"
    )
    parser.add_argument(
        "--team-batches", type=int, default=10, help="figure 13: log_batch calls per probe"
    )
    parser.add_argument(
        "--schedule-runs", type=int, default=3, help="figure 20: scheduled runs (one a minute)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="the results file (default bench/results.md; with --only, "
        "bench/results-<figures>.md)",
    )
    args = parser.parse_args(argv)
    args.parts = [
        part for part, numbers in PARTS.items() if not args.only or set(numbers) & set(args.only)
    ]
    args.figures = [number for part in args.parts for number in PARTS[part]]
    if args.output is None:
        name = "results.md" if not args.only else f"results-{'-'.join(map(str, args.figures))}.md"
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


# A figure whose part started while the 1-minute load average was above this is marked in the
# table: on this 2-core machine it means something besides the benchmark was running
LOAD_LIMIT = 1.5
# How long each part waits for the load of the run's own previous part to fade below the limit
LOAD_SETTLE_S = 90


def settled_load() -> float:
    """The 1-minute load average once it is at most LOAD_LIMIT, or after LOAD_SETTLE_S seconds
    of waiting for that (``os.getloadavg()[0]``: runnable processes, averaged)."""
    deadline = time.monotonic() + LOAD_SETTLE_S
    while os.getloadavg()[0] > LOAD_LIMIT and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def mark_loaded(table: list, loads: dict[str, float]) -> None:
    """Appends ``(load 2.3)`` to the "met?" cell of every row whose part (PARTS) started above
    LOAD_LIMIT; ``loads`` maps a part's name to its load average at the start."""
    for row in table:
        for part, numbers in PARTS.items():
            if row.number in numbers and loads.get(part, 0.0) > LOAD_LIMIT:
                row.met += f" (load {loads[part]:.1f})"


def terminate(signum: int, _frame) -> None:
    """SIGTERM as Ctrl-C, so the cleanup in main() runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    """Run the benchmark; return the exit status (0 also when targets are missed)."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminate)
    client = docker.from_env(timeout=600)
    machine_info = machine(client)
    results = Results()
    team = TeamResults()
    release = ReleaseResults()
    schedule = ScheduleResults()
    started = time.perf_counter()
    load_before = os.getloadavg()
    workspace = Workspace.create(client)
    log(
        f"run {workspace.run_id}: project copy {workspace.directory}, images "
        f"{workspace.prefix}/*, {workspace.project}-* and {workspace.second_project}-*"
    )
    loads: dict[str, float] = {}

    def start(part: str) -> bool:
        """Whether ``part`` runs; if so, its load average at the start (after settling)."""
        if part in args.parts:
            loads[part] = settled_load()
            log(f"{part}: load average {loads[part]:.1f} at the start")
        return part in args.parts

    try:
        if start("builds"):
            deadline = started + args.max_minutes * 60 - SERVICES_RESERVE_S
            run_builds(workspace, results, args.build_reps, deadline)
            disk_usage(workspace, results)
        else:
            log("building the images once (no cold builds)")
            # On a base of the run's own, so every layer, intermediate ones too, is removed at
            # the end (a build on the user's base would leave its layers)
            workspace.base_image = workspace.fresh_base("only")
            log(f"  {build_stack(workspace).seconds:.0f} s")
        if start("services"):
            run_services(
                workspace,
                results,
                up_reps=args.up_reps,
                run_reps=args.run_reps,
                kernel_reps=args.kernel_reps,
                calls=args.calls,
                batches=args.batches,
                idle_s=args.idle_seconds,
            )
        if start("dask"):
            _measure(
                results,
                11,
                "Dask: the same search in one process, with joblib n_jobs=2, on 1 and on 2 workers",
                lambda: run_dask(workspace, results, reps=args.dask_reps, idle_s=args.idle_seconds),
            )
        if start("team"):
            run_team_figure(workspace, team, args)
        if start("loop"):
            _measure(
                results,
                14,
                f"a training loop logging {args.loop_values:,} values, sync and as jobs log",
                lambda: run_loop(workspace, results, args.loop_values),
            )
        if start("release"):
            log("figures 15-18: a released model's image against make serve")
            try:
                run_release(workspace, release)
            except BenchError as error:
                # A figure that fails is reported, the run goes on (as _measure does)
                release.error = str(error).splitlines()[0]
                log(f"  failed: {release.error}")
        if start("schedule"):
            run_schedule(workspace, schedule, args.schedule_runs, args.idle_seconds)
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
    parts = {
        "builds": f"medians of {len(results.cold_stack_s)} cold builds, rebuilds and "
        "second-project builds",
        "services": f"{args.up_reps} `make up`, {args.run_reps} runs, {args.kernel_reps} "
        f"kernels; {args.calls:,} `log_metric` calls and {args.batches} `log_batch` calls per "
        "server",
        "dask": f"{args.dask_reps} searches per Dask setting",
        "team": f"{args.team_reps} rounds of {args.team_calls} `log_metric` and "
        f"{args.team_batches} `log_batch` calls per tracking store, alternating",
        "loop": f"one loop of {args.loop_values:,} values per way of logging",
        "release": "a model released and served both ways, loads bounded in count and time",
        "schedule": f"{args.schedule_runs} runs of an every-minute job and as many by hand",
    }
    settings = (
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on commit "
        f"{repo_commit(REPO_ROOT)} in {minutes:.0f} min"
        + ("" if not args.only else f" (figures {', '.join(map(str, args.figures))} only)")
        + f"; {'; '.join(parts[part] for part in args.parts)}; "
        f"idle RSS read {args.idle_seconds:.0f} s after start; load average "
        f"{load_text(load_before)} before, {load_text(os.getloadavg())} after; at the start of "
        "each part (after up to "
        f"{LOAD_SETTLE_S} s for the previous part's load to fade): "
        + ", ".join(f"{part} {load:.1f}" for part, load in loads.items())
        + f". A figure marked (load N) was measured in a part that started above {LOAD_LIMIT}: "
        "the machine was busy with more than this run."
    )
    table = rows(results, args.figures) + (team_rows(team) if "team" in args.parts else [])
    table += release_rows(release) if "release" in args.parts else []
    table += schedule_rows(schedule) if "schedule" in args.parts else []
    mark_loaded(table, loads)
    text = document(results, machine_info, settings, args.figures)
    text = text.replace(table_markdown(rows(results, args.figures)), table_markdown(table))
    if "team" in args.parts:
        text += team_breakdown(team) + "\n"
    if "release" in args.parts:
        text += release_breakdown(release) + "\n"
    if "schedule" in args.parts and schedule.error:
        text += f"- Figures 19-20 failed: {schedule.error}\n"
    args.output.write_text(text)
    print(f"\nmlstack benchmark ({', '.join(f'{k} {v}' for k, v in machine_info.items())})\n")
    print(table_markdown(table))
    print(f"\nwritten to {args.output} with the breakdowns ({minutes:.0f} min)")
    return 0


def run_team_figure(workspace: Workspace, team: TeamResults, args: argparse.Namespace) -> None:
    """Figure 13 with the options' sizes (see bench/team.py)."""
    run_team(
        workspace,
        team,
        reps=args.team_reps,
        calls=args.team_calls,
        batches=args.team_batches,
        idle_s=args.idle_seconds,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
