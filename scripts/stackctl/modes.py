"""The mode: which compose files every compose call merges (``COMPOSE_FILE`` in .env):
compose.yaml, then compose.gpu.yaml for GPUs (``GPU=1``), then compose.team.yaml for the team
tracking server (``TEAM=1``). ``GPU=0``/``TEAM=0`` take a file away; empty keeps it as it is.
Scheduled jobs (``SCHEDULE=1``) are a compose profile instead, remembered as
``COMPOSE_PROFILES`` in .env: their services sit in compose.yaml, where the team file can
change them."""

from __future__ import annotations

from typing import List

from stackctl.proc import Failure

DEFAULT = "compose.yaml"
GPU_FILE = "compose.gpu.yaml"
TEAM_FILE = "compose.team.yaml"
# A member's clone on a team's shared tracking server (make join / make leave)
MEMBER_FILE = "compose.member.yaml"
# The profile of the scheduling engine and its worker (compose.yaml)
SCHEDULE_PROFILE = "schedule"


def switch(files: List[str], flag: str, file: str, name: str) -> List[str]:
    """``files`` with ``file`` added (``flag`` 1) or removed (0), or as they are (empty).

    Raises:
        Failure: ``flag`` is something else (status 2), naming the switch ``name``.
    """
    if flag == "1":
        return files if file in files else files + [file]
    if flag == "0":
        return [each for each in files if each != file]
    if flag == "":
        return files
    raise Failure(
        f"{file}'s switch must be 1 or 0 (make up {name}=1, make up {name}=0), not '{flag}'",
        status=2,
    )


def compose_files(current: str, gpu: str = "", team: str = "") -> str:
    """The COMPOSE_FILE value for the switches ``gpu`` and ``team`` ('1', '0' or '') applied to
    ``current`` (a ``:``-separated list); the team override always last, so it wins over the
    GPU one where both set a value.

    Raises:
        Failure: a switch is neither 1, 0 nor empty (status 2).
    """
    files = [each for each in current.split(":") if each]
    files = switch(files, gpu, GPU_FILE, "GPU")
    files = switch(files, team, TEAM_FILE, "TEAM")
    if TEAM_FILE in files and MEMBER_FILE in files:
        raise Failure(
            "this clone is a member of a shared tracking server (make join), which cannot run "
            "the team server too; make leave first",
            status=2,
        )
    if TEAM_FILE in files:
        files = [each for each in files if each != TEAM_FILE] + [TEAM_FILE]
    return ":".join(files)


def with_member(files: str, member: bool) -> str:
    """A COMPOSE_FILE value with the member override added (last) or taken away."""
    kept = [each for each in files.split(":") if each and each != MEMBER_FILE]
    return ":".join(kept + ([MEMBER_FILE] if member else []))


def is_member(files: str) -> bool:
    """Whether a COMPOSE_FILE value is a member's clone of a shared tracking server."""
    return MEMBER_FILE in files.split(":")


def is_team(files: str) -> bool:
    """Whether a COMPOSE_FILE value includes the team tracking server."""
    return TEAM_FILE in files.split(":")


def describe(files: str) -> str:
    """The tracking store a COMPOSE_FILE value makes active, as `make up` tells it."""
    if is_team(files):
        return "the team tracking server (PostgreSQL backend store, S3 artifact store, auth on)"
    return "the SQLite tracking server (mlflow-data volume); the team store's volumes are kept"


def profiles(current: str, schedule: str) -> str:
    """The COMPOSE_PROFILES value for the switch ``schedule`` ('1', '0' or '') applied to
    ``current`` (a ``,``-separated list).

    Raises:
        Failure: the switch is neither 1, 0 nor empty (status 2).
    """
    names = [each for each in current.split(",") if each]
    return ",".join(switch(names, schedule, SCHEDULE_PROFILE, "SCHEDULE"))


def is_scheduled(profiles_value: str) -> bool:
    """Whether a COMPOSE_PROFILES value turns the scheduled jobs on."""
    return SCHEDULE_PROFILE in profiles_value.split(",")
