"""make's schedule commands, run in the project's worker container (which holds the engine's
address and credentials and sees the project folder):

- ``apply [FILE]``: check the schedule file (default /project/schedules.toml) whole, then make
  the engine's jobs match it; a bad entry: one ``error:`` line naming it, exit 1, nothing changed.
- ``list``: each job, its schedule, next run, last run and that run's state.
- ``run JOB``: run a job now and wait for its end; exit 1 unless it completed.
- ``serve``: the engine itself (the scheduler image's command, :mod:`.serve`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from mlstack_schedules import spec

PROJECT = Path("/project")


def main(argv: list[str]) -> int:
    """The command ``argv[0]`` with its arguments; the exit status."""
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "serve":
        from mlstack_schedules.serve import main as serve

        serve()
    if command == "check" or command == "apply":
        file = Path(rest[0]) if rest else PROJECT / "schedules.toml"
        try:
            jobs = spec.load(file, PROJECT, shutil.which) if file.exists() else []
        except spec.ScheduleError as error:
            print(f"error: {error}; the schedules in force are unchanged", file=sys.stderr)
            return 1
        if command == "check":
            print(f"schedules: {len(jobs)} jobs, all valid")
            return 0
        from mlstack_schedules import engine

        for line in engine.apply(jobs):
            print(line)
        if not file.exists():
            print(f"schedules: no {file.name} in the project folder, so no scheduled job")
        return 0
    if command == "list":
        from mlstack_schedules import engine

        table = engine.rows()
        if not table:
            print("no scheduled job (project/schedules.toml holds none; make up applies it)")
            return 0
        header = ("JOB", "SCHEDULE", "NEXT RUN", "LAST RUN", "STATE")
        lines = [header] + [
            (row.job, row.schedule, row.next_run, row.last_run, row.last_state) for row in table
        ]
        widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
        for line in lines:
            print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
        return 0
    if command == "run" and len(rest) == 1:
        from mlstack_schedules import engine

        try:
            run_id, name, state = engine.run_now(rest[0])
        except LookupError:
            known = ", ".join(row.job for row in engine.rows()) or "none"
            print(
                f"error: no scheduled job {rest[0]!r} (jobs: {known}); add it to "
                "project/schedules.toml and run make up",
                file=sys.stderr,
            )
            return 1
        print(f"job {rest[0]}: run {name} ({run_id}): {state}")
        return 0 if state.startswith("Completed") else 1
    print(
        "usage: python -m mlstack_schedules apply [FILE] | check [FILE] | list | run JOB",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
