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
import signal
import sys
import time
from pathlib import Path

import docker

from bench.measure import Results, disk_usage, repo_commit, run_builds, run_services
from bench.report import document, rows, table_markdown
from bench.team import TeamResults, run_team, team_breakdown, team_rows
from bench.workspace import BenchError, Workspace, log
from tests.helpers import REPO_ROOT

# Seconds kept for everything after the cold builds (rebuilds, the second project, make up,
# probes, the default server, cleanup): about 5 minutes here; 7 for a loaded machine
SERVICES_RESERVE_S = 420


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
        "--idle-seconds", type=float, default=30, help="wait after start before reading idle RSS"
    )
    parser.add_argument(
        "--team",
        action="store_true",
        help="only figure 13 (the team stack next to the SQLite default); prints, writes no file",
    )
    parser.add_argument("--no-team", action="store_true", help="skip figure 13")
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
        "--output", type=Path, default=REPO_ROOT / "bench/results.md", help="the results file"
    )
    return parser.parse_args(argv)


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
    started = time.perf_counter()
    workspace = Workspace.create(client)
    log(
        f"run {workspace.run_id}: project copy {workspace.directory}, images "
        f"{workspace.prefix}/*, {workspace.project}-* and {workspace.second_project}-*"
    )
    try:
        if args.team:
            return team_only(workspace, team, args, machine_info, started)
        deadline = started + args.max_minutes * 60 - SERVICES_RESERVE_S
        run_builds(workspace, results, args.build_reps, deadline)
        disk_usage(workspace, results)
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
        if not args.no_team:
            run_team_figure(workspace, team, args)
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
    settings = (
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on commit "
        f"{repo_commit(REPO_ROOT)} in {minutes:.0f} min; medians of {len(results.cold_stack_s)} "
        f"cold builds, rebuilds and second-project builds, {args.up_reps} `make up`, "
        f"{args.run_reps} runs, {args.kernel_reps} kernels; "
        f"{args.calls:,} `log_metric` calls and {args.batches} `log_batch` calls per server; "
        f"idle RSS read {args.idle_seconds:.0f} s after start."
    )
    table = rows(results) + ([] if args.no_team else team_rows(team))
    text = document(results, machine_info, settings)
    if not args.no_team:
        text = text.replace(table_markdown(rows(results)), table_markdown(table))
        text += team_breakdown(team) + "\n"
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


def team_only(
    workspace: Workspace,
    team: TeamResults,
    args: argparse.Namespace,
    machine_info: dict[str, str],
    started: float,
) -> int:
    """`--team`: figure 13 alone (images built as `make up` builds them, from the layer cache
    where it can), printed with its breakdown; bench/results.md is left as it is."""
    run_team_figure(workspace, team, args)
    minutes = (time.perf_counter() - started) / 60
    print(
        f"\nmlstack benchmark, figure 13 ({', '.join(f'{k} {v}' for k, v in machine_info.items())};"
    )
    print(f"{args.team_reps} rounds of {args.team_calls} `log_metric` and {args.team_batches}")
    print(f"`log_batch` calls per stack, alternating; {minutes:.0f} min)\n")
    print(table_markdown(team_rows(team)))
    print("\n" + team_breakdown(team))
    return 1 if team.error else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
