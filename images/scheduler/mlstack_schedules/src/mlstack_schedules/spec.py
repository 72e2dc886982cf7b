"""The schedule file (``project/schedules.toml``, the project's own): its jobs, checked whole
before anything reaches the engine, so a bad entry changes nothing.

A job is a ``[[job]]`` table::

    [[job]]
    name = "nightly-train"                 # letters, digits, - and _; unique
    command = ["python train.py", "python evaluate.py --model ..."]  # or one string
    cron = "0 2 * * *"                     # minute hour day month weekday
    timezone = "Europe/Paris"              # IANA name; default: [defaults]'s, else UTC
    retries = 1                            # runs of a failed step again (default 0)
    retry_delay = 60                       # seconds between them (default 60)
    timeout = "2h"                         # per step: seconds, or a number with s, m or h
    if_running = "skip"                    # the previous run still running: skip or queue
    missed = "skip"                        # a time passed while the stack was down: skip or run-once
    enabled = true                         # false: kept in the engine, not scheduled

``[defaults]`` may set ``timezone``, ``retries``, ``retry_delay``, ``timeout``, ``if_running``
and ``missed`` for every job.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# What each key of a job may hold: its type and default
JOB_KEYS = {"name", "command", "cron", "description", "enabled"}
DEFAULT_KEYS = {"timezone", "retries", "retry_delay", "timeout", "if_running", "missed"}
IF_RUNNING = ("skip", "queue")
MISSED = ("skip", "run-once")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
DURATION = re.compile(r"^(\d+)\s*([smh]?)$")


class ScheduleError(ValueError):
    """One bad entry of the schedule file; its message is the one line users see, naming the
    entry (``schedules.toml: job 'x': ...``)."""


@dataclass(frozen=True)
class Job:
    """One scheduled job, checked.

    Attributes:
        name: the job's name (the engine's deployment name, the MLflow tag's value).
        command: the steps, each a command line of the project run in order (the first that
            fails fails the job).
        cron: a five-field cron expression, in ``timezone`` (an IANA name).
        retries, retry_delay: a failed step runs again up to ``retries`` times, ``retry_delay``
            seconds apart.
        timeout: seconds a step may run before it is stopped and failed; None: no limit.
        if_running: ``skip`` (the engine cancels the new run and says why) or ``queue``.
        missed: for a time that passed while the stack was down: ``skip`` or ``run-once``.
        enabled: False keeps the job in the engine with its schedule paused.
    """

    name: str
    command: tuple[str, ...]
    cron: str
    timezone: str = "UTC"
    retries: int = 0
    retry_delay: int = 60
    timeout: int | None = None
    if_running: str = "skip"
    missed: str = "skip"
    enabled: bool = True
    description: str = ""
    argv: tuple[tuple[str, ...], ...] = field(default=(), compare=False)


def seconds(value: Any, where: str, key: str) -> int:
    """A duration in seconds from an integer (seconds) or a string ``90s``, ``30m``, ``2h``.

    Raises:
        ScheduleError: anything else, or zero.
    """
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        total = value
    else:
        found = DURATION.match(str(value).strip()) if isinstance(value, str) else None
        if not found:
            raise ScheduleError(
                f'{where}: {key} = {value!r} is not a duration (seconds, or e.g. "30m", "2h")'
            )
        total = int(found[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[found[2]]
    if total <= 0:
        raise ScheduleError(f"{where}: {key} must be more than 0 seconds, not {value!r}")
    return total


def whole(value: Any, where: str, key: str) -> int:
    """A whole number >= 0 (``retries``).

    Raises:
        ScheduleError: anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScheduleError(f"{where}: {key} = {value!r} is not a whole number >= 0")
    return value


def choice(value: Any, where: str, key: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed``.

    Raises:
        ScheduleError: anything else, naming the allowed words.
    """
    if value not in allowed:
        raise ScheduleError(f"{where}: {key} = {value!r} must be one of {', '.join(allowed)}")
    return value


def check_cron(cron: Any, timezone: Any, where: str) -> None:
    """The cron expression and time zone as the engine reads them (Prefect's CronSchedule).

    Raises:
        ScheduleError: either is not valid (Prefect's reason, one line).
    """
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise ScheduleError(
            f"{where}: cron = {cron!r} is not a cron expression of five fields "
            '(minute hour day month weekday, e.g. "0 2 * * *")'
        )
    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as error:
        reason = error.errors()[0]["msg"].removeprefix("Value error, ")
        raise ScheduleError(f"{where}: {reason}") from None


def split_command(step: Any, where: str) -> tuple[str, ...]:
    """A step's words, as a shell would split them (no shell runs it).

    Raises:
        ScheduleError: not a string, empty, or unbalanced quotes.
    """
    if not isinstance(step, str) or not step.strip():
        raise ScheduleError(f"{where}: command must be a command line or a list of them")
    try:
        return tuple(shlex.split(step))
    except ValueError as error:
        raise ScheduleError(f"{where}: command {step!r}: {error}") from None


def parse(
    text: str, known_command: Callable[[tuple[str, ...]], str | None] = lambda argv: None
) -> list[Job]:
    """The jobs of a schedule file's text, every entry checked.

    Args:
        text: the file's TOML.
        known_command: ``known_command(argv)`` says why a step's command does not exist in the
            runner (e.g. ``"no file train2.py in the project"``), or None when it does.

    Raises:
        ScheduleError: the first bad entry: TOML syntax, an unknown key, a duplicate name, a bad
            cron expression or time zone, an unknown command, a bad option value.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScheduleError(f"schedules.toml: not valid TOML: {error}") from None
    unknown = set(data) - {"job", "defaults"}
    if unknown:
        raise ScheduleError(
            f"schedules.toml: unknown table {sorted(unknown)[0]!r}; the file holds [defaults] "
            "and [[job]] tables"
        )
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ScheduleError("schedules.toml: defaults must be a table ([defaults])")
    for key in sorted(set(defaults) - DEFAULT_KEYS):
        raise ScheduleError(
            f"schedules.toml: [defaults]: unknown option {key!r}; known: "
            f"{', '.join(sorted(DEFAULT_KEYS))}"
        )
    entries = data.get("job", [])
    if not isinstance(entries, list):
        raise ScheduleError("schedules.toml: jobs are [[job]] tables")
    jobs: list[Job] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        name = entry.get("name")
        where = f"schedules.toml: job {name!r}" if name else f"schedules.toml: job #{number}"
        if not isinstance(name, str) or not NAME.match(name):
            raise ScheduleError(
                f"{where}: name must be 1-63 letters, digits, - or _ (starting with a letter "
                f"or digit), not {name!r}"
            )
        if name in seen:
            raise ScheduleError(f"{where}: the name is used by an earlier job; names are unique")
        seen.add(name)
        for key in sorted(set(entry) - JOB_KEYS - DEFAULT_KEYS):
            raise ScheduleError(
                f"{where}: unknown option {key!r}; known: "
                f"{', '.join(sorted(JOB_KEYS | DEFAULT_KEYS))}"
            )
        values = {**defaults, **entry}
        if "cron" not in entry:
            raise ScheduleError(f'{where}: cron is missing (e.g. cron = "0 2 * * *")')
        timezone = values.get("timezone", "UTC")
        check_cron(entry["cron"], timezone, where)
        steps = entry.get("command")
        if isinstance(steps, str):
            steps = [steps]
        if not isinstance(steps, list) or not steps:
            raise ScheduleError(f"{where}: command must be a command line or a list of them")
        argv = tuple(split_command(step, where) for step in steps)
        for words in argv:
            problem = known_command(words)
            if problem:
                raise ScheduleError(f"{where}: unknown command {shlex.join(words)!r}: {problem}")
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ScheduleError(f"{where}: enabled must be true or false")
        timeout = values.get("timeout")
        jobs.append(
            Job(
                name=name,
                command=tuple(steps),
                cron=entry["cron"],
                timezone=timezone,
                retries=whole(values.get("retries", 0), where, "retries"),
                retry_delay=seconds(values.get("retry_delay", 60), where, "retry_delay"),
                timeout=None if timeout is None else seconds(timeout, where, "timeout"),
                if_running=choice(
                    values.get("if_running", "skip"), where, "if_running", IF_RUNNING
                ),
                missed=choice(values.get("missed", "skip"), where, "missed", MISSED),
                enabled=enabled,
                description=str(entry.get("description", "")),
                argv=argv,
            )
        )
    return jobs


def project_command(project: Path, path: Callable[[str], str | None]) -> Callable:
    """The ``known_command`` check of :func:`parse` for a project folder: ``python FILE.py``
    needs the file in ``project``, ``python -m MODULE`` passes (Python says at run time),
    any other program must be on the runner's PATH (``path``: :func:`shutil.which`)."""

    def known(argv: tuple[str, ...]) -> str | None:
        program = argv[0]
        if program in ("python", "python3"):
            script = next((word for word in argv[1:] if not word.startswith("-")), None)
            if "-m" in argv[1:] or "-c" in argv[1:] or script is None:
                return None
            if not (project / script).is_file():
                return f"no file {script} in the project folder"
            return None
        if "/" in program:
            return None if (project / program).is_file() else f"no file {program} in the project"
        return None if path(program) else f"no program {program} in the runner image"

    return known


def load(file: Path, project: Path, path: Callable[[str], str | None]) -> list[Job]:
    """The checked jobs of the schedule file ``file`` of the project folder ``project``.

    Raises:
        ScheduleError: the file cannot be read, or :func:`parse`'s reasons.
    """
    try:
        text = file.read_text()
    except OSError as error:
        raise ScheduleError(f"{file.name}: cannot be read: {error.strerror}") from None
    return parse(text, project_command(project, path))
