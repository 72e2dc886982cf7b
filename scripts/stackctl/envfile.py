"""The project's settings files: ``.env`` (per machine, mode 600: read, complete, write),
and ``env/images.env`` (the image settings, the one place they are written)."""

from __future__ import annotations

import os
import pwd
import re
import secrets
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from stackctl import modes
from stackctl.proc import ROOT, Failure

# The secrets make generates and keeps only in .env: the Jupyter token, MLflow's admin password,
# the password jupyter and bash log in with as MLSTACK_USER, the server's session key, the team
# stack's database password and S3 keys, the scheduling engine's login (admin:<password>) and,
# in team mode, its database role's password
SECRETS = (
    "JUPYTER_TOKEN",
    "MLFLOW_ADMIN_PASSWORD",
    "MLSTACK_TRACKING_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "MLSTACK_S3_ACCESS_KEY",
    "MLSTACK_S3_SECRET_KEY",
    "MLSTACK_SCHEDULER_AUTH",
    "MLSTACK_SCHEDULER_DB_PASSWORD",
)
# Secrets of a form of their own: the engine's login is Prefect's auth string, user:password,
# which its UI asks for whole; one value, so a swarm moves it into a secret like the others
SECRET_FORMS = {"MLSTACK_SCHEDULER_AUTH": "admin:{}"}
# Secrets .env holds that the user gave (make join; a failed job's notification URL, which
# often holds a token): never generated, masked like the others
GIVEN_SECRETS = ("MLSTACK_TEAM_PASSWORD", "MLSTACK_NOTIFY_URL")
# The tracking server's basic-auth admin (compose.yaml's MLFLOW_AUTH_ADMIN_USERNAME): jobs and
# notebooks log in as MLSTACK_USER, who must be another account, never an admin
ADMIN_USER = "admin"
# MLSTACK_USER for a host user of that name
ADMIN_USER_RENAMED = f"{ADMIN_USER}-user"
HEADER = "# Per-machine settings written by make (scripts/stackctl); documented in .env.example.\n"
_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def parse(text: str) -> Dict[str, str]:
    """KEY=VALUE lines of a settings file, the last one of a key winning, as the scripts always
    read them: the value raw (no quotes removed), comments and other lines skipped."""
    values: Dict[str, str] = {}
    for line in text.splitlines():
        found = _LINE.match(line)
        if found:
            values[found[1]] = found[2]
    return values


def image_settings(environ: Mapping[str, str] = os.environ) -> Dict[str, str]:
    """env/images.env's settings (MLSTACK_VERSION, MLSTACK_IMAGE_PREFIX, BASE_IMAGE,
    PYTHON_VERSION), each overridden by a non-empty value of the same name in ``environ``."""
    values = parse((ROOT / "env" / "images.env").read_text())
    return {key: environ.get(key) or value for key, value in values.items()}


def stack_image(name: str, settings: Optional[Mapping[str, str]] = None) -> str:
    """The reference of one of the stack's shared images, e.g. ``mlstack/science:0.1.0``."""
    settings = settings or image_settings()
    return f"{settings['MLSTACK_IMAGE_PREFIX']}/{name}:{settings['MLSTACK_VERSION']}"


def project_name_from(folder: str) -> str:
    """A compose project name made from a folder's name by Compose's rule: lowercase letters,
    digits, dashes and underscores; any other character becomes a dash."""
    return re.sub(r"[^a-z0-9_-]", "-", folder.lower())


class EnvFile:
    """The project's ``.env``, kept as its lines so that comments, order and values written by
    hand survive every change. Values are read raw, the last line of a key winning."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: List[str] = path.read_text().splitlines() if path.exists() else []

    @classmethod
    def load(cls) -> "EnvFile":
        """The project folder's .env (empty when it does not exist yet)."""
        return cls(ROOT / ".env")

    def get(self, key: str) -> str:
        """``key``'s value, empty when .env or the key is missing."""
        return parse("\n".join(self.lines)).get(key, "")

    def has(self, key: str) -> bool:
        """Whether some line sets ``key`` to a non-empty value."""
        return any(re.match(re.escape(key) + "=.", line) for line in self.lines)

    def set(self, key: str, value: str) -> bool:
        """KEY=VALUE: every line setting ``key`` replaced, or a line added at the end.

        Returns:
            Whether anything changed.
        """
        new = f"{key}={value}"
        prefix = key + "="
        if any(line.startswith(prefix) for line in self.lines):
            lines = [new if line.startswith(prefix) else line for line in self.lines]
        else:
            lines = self.lines + [new]
        changed = lines != self.lines
        self.lines = lines
        return changed

    def remove(self, key: str) -> None:
        """Drop every line that sets ``key``."""
        self.lines = [line for line in self.lines if not line.startswith(key + "=")]

    def save(self) -> None:
        """Write the file with mode 600 (it holds secrets), replacing it in one step so that a
        crash never leaves half a file; its owner stays the same when root rewrites it."""
        owner = None
        if self.path.exists():
            info = self.path.stat()
            owner = (info.st_uid, info.st_gid)
        partial = self.path.with_name(".env.partial")
        descriptor = os.open(str(partial), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write("\n".join(self.lines) + "\n")
        os.chmod(str(partial), 0o600)
        if owner and os.getuid() == 0 and owner != (0, 0):
            os.chown(str(partial), *owner)
        os.replace(str(partial), str(self.path))


def user_name(uid: int) -> str:
    """The host user's name for ``uid`` (``id -un``), or ``user<uid>`` for a UID without one."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"user{uid}"


def complete(env: EnvFile, environ: Mapping[str, str], folder: str) -> List[str]:
    """Fill in what ``env`` lacks and apply the switches in ``environ``, keeping every value
    already there: the project name (``COMPOSE_PROJECT_NAME`` in ``environ``, else from
    ``folder``), the host user's IDs and name (``MLSTACK_UID``/``_GID``/``_USER`` in ``environ``,
    else this process's), the auth switch, the mode (``TEAM``/``GPU`` = 1 or 0: which compose
    files, :mod:`stackctl.modes`), ``EXTRA_CA_CERTS`` when given, each missing or empty secret
    (48 random hex characters) and env/images.env's values (copied in, replacing older ones).

    Returns:
        The lines to tell the user (stderr), in order.

    Raises:
        Failure: ``TEAM``, ``GPU`` or ``SCHEDULE`` is neither 1, 0 nor empty, or .env's
            ``MLSTACK_USER`` is the tracking server's admin (status 2).
    """
    said: List[str] = []
    if not env.has("COMPOSE_PROJECT_NAME"):
        env.set(
            "COMPOSE_PROJECT_NAME",
            environ.get("COMPOSE_PROJECT_NAME") or project_name_from(folder),
        )
    if not env.has("MLSTACK_UID"):
        uid = environ.get("MLSTACK_UID") or str(os.getuid())
        gid = environ.get("MLSTACK_GID") or str(os.getgid())
        env.set("MLSTACK_UID", uid)
        env.set("MLSTACK_GID", gid)
        said.append(
            f"env: project {env.get('COMPOSE_PROJECT_NAME')}, containers run as {uid}:{gid}"
        )
        if uid == "0":
            said.append(
                "warning: .env makes the containers run as root (UID 0) because make ran as "
                "root; set MLSTACK_UID/MLSTACK_GID in .env to a regular user's IDs (see "
                "docs/operations.md)"
            )
    if not env.has("MLSTACK_GID"):
        env.set("MLSTACK_GID", environ.get("MLSTACK_GID") or str(os.getgid()))
    if not env.has("MLSTACK_MLFLOW_AUTH"):
        env.set("MLSTACK_MLFLOW_AUTH", "false")
    if not env.has("MLSTACK_USER"):
        name = environ.get("MLSTACK_USER") or user_name(os.getuid())
        if name == ADMIN_USER:
            # A host user named like the admin (a Mac's first account often is): the runs are
            # still theirs, under a name the admin account does not have
            name = ADMIN_USER_RENAMED
            said.append(
                f"env: MLSTACK_USER={name} in .env (your runs' user: {ADMIN_USER} is the "
                "tracking server's admin account)"
            )
        env.set("MLSTACK_USER", name)
    elif env.get("MLSTACK_USER") == ADMIN_USER:
        raise Failure(
            f"MLSTACK_USER={ADMIN_USER} in .env is the tracking server's admin account, which "
            f"jobs and notebooks must not log in as: set MLSTACK_USER={ADMIN_USER_RENAMED} (or "
            "another name) in .env",
            status=2,
        )

    current = env.get("COMPOSE_FILE") or modes.DEFAULT
    files = modes.compose_files(current, environ.get("GPU", ""), environ.get("TEAM", ""))
    if files != current:
        env.set("COMPOSE_FILE", files)
        said.append(
            f"mode: {modes.describe(files)}; COMPOSE_FILE={files} in .env, so plain "
            "docker compose uses it too"
        )

    current = env.get("COMPOSE_PROFILES")
    profiles = modes.profiles(current, environ.get("SCHEDULE", ""))
    if profiles != current:
        env.set("COMPOSE_PROFILES", profiles)
        said.append(
            "mode: scheduled jobs "
            + ("on" if modes.is_scheduled(profiles) else "off")
            + f"; COMPOSE_PROFILES={profiles} in .env, so plain docker compose uses it too"
        )

    ca = environ.get("EXTRA_CA_CERTS", "")
    if ca and env.get("EXTRA_CA_CERTS") != ca:
        env.set("EXTRA_CA_CERTS", ca)
        said.append(f"env: remembered EXTRA_CA_CERTS={ca} in .env")

    for key in SECRETS:
        if not env.has(key):
            env.remove(key)
            env.set(key, SECRET_FORMS.get(key, "{}").format(secrets.token_hex(24)))

    for key, value in parse((ROOT / "env" / "images.env").read_text()).items():
        env.set(key, value)
    return said


def active_files(environ: Mapping[str, str] = os.environ) -> str:
    """The mode's compose files (COMPOSE_FILE) as every compose call sees them: the
    environment's, else .env's (make's own exports win, as they do for compose)."""
    return environ.get("COMPOSE_FILE") or EnvFile.load().get("COMPOSE_FILE")


def scheduled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the scheduled jobs are on (COMPOSE_PROFILES: the environment's, else .env's)."""
    return modes.is_scheduled(
        environ.get("COMPOSE_PROFILES") or EnvFile.load().get("COMPOSE_PROFILES")
    )
