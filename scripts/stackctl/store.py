"""The tracking server's data: backup, restore, destroy, the move of the SQLite store into the
team store, and garbage collection. The SQLite default keeps everything on the mlflow-data
volume; team mode (compose.team.yaml) has PostgreSQL's databases and the object store's bucket.
The work inside containers is done by the mlflow image's store.py and scripts/team_store.py."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Mapping, Sequence

from stackctl.envfile import EnvFile
from stackctl.proc import ROOT, Failure, compose, output, run, say

STORE = "/usr/local/lib/mlstack/store.py"
# The team store's helper, mounted from here rather than baked into the shared mlflow image
TEAM_STORE = "/usr/local/lib/mlstack/team_store.py"
DATABASES = ("mlflow", "mlflow_auth")
# A team restore restores each database into <name>_incoming, then swaps: <name>_previous
INCOMING, PREVIOUS = "_incoming", "_previous"
# What a team restore that failed before its swap left
KEPT = "the team store is as it was and the tracking server runs as before"


def _team_store_mount() -> str:
    return f"{ROOT}/scripts/team_store.py:{TEAM_STORE}:ro"


def project_name() -> str:
    """The compose project's name, as compose resolves it."""
    config = compose("config", "--format", "json", capture=True)
    return json.loads(config.stdout)["name"]


def is_team() -> bool:
    """Team mode: the merged configuration has the postgres service (TEAM=1 or .env)."""
    services = compose("config", "--services", capture=True).stdout.split()
    return "postgres" in services


def stamp() -> str:
    """The UTC time in backup names: 20261206T041307Z."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


class Store:
    """The store commands for one project folder; ``user`` is the host user's UID:GID, who
    owns the backups (also when make runs as root)."""

    def __init__(self) -> None:
        env = EnvFile.load()
        self.user = f"{env.get('MLSTACK_UID')}:{env.get('MLSTACK_GID')}"
        self.backups = ROOT / "backups"
        self.scratches: List[Path] = []

    def close(self) -> None:
        """Remove the intermediate folders, whatever happened."""
        for folder in self.scratches:
            shutil.rmtree(folder, ignore_errors=True)

    def _own(self, path: Path, recursive: bool = False) -> None:
        # make run by root for another user: the folder is that user's, like the archive
        if os.getuid() != 0:
            return
        uid, gid = (int(part) for part in self.user.split(":"))
        os.chown(str(path), uid, gid)
        if recursive:
            for each in path.rglob("*"):
                os.chown(str(each), uid, gid)

    def backups_folder(self) -> None:
        """backups/, which only its owner may enter (0700): archives hold the user store's
        password hashes and every artifact. The archives themselves stay readable by the
        tracking server's user, who restores them."""
        self.backups.mkdir(exist_ok=True)
        os.chmod(str(self.backups), 0o700)
        self._own(self.backups)

    def scratch(self, name: str) -> Path:
        """A folder under backups/ for intermediate files, removed at the end."""
        folder = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=str(self.backups)))
        self.scratches.append(folder)
        self._own(folder)
        return folder

    def in_mlflow(
        self, volumes: Sequence[str], *command: str, as_user: bool = True, check: bool = True
    ):
        """``python COMMAND`` in a one-off container of the mlflow service (no dependencies
        started), with ``volumes`` mounted; as the host user (the backups are theirs) unless
        ``as_user`` is False (the server's own user, who owns the store). Returns the completed
        process; raises Failure on a non-zero exit when ``check``."""
        options = ["--user", self.user] if as_user else []
        for volume in volumes:
            options += ["--volume", volume]
        return compose(
            "run", "--rm", "--no-deps", *options, "mlflow", "python", *command, check=check
        )

    def start_again(self, running: str) -> None:
        """Start mlflow again when it was running before, and print the URLs (the same as
        before: the host port is remembered in .env)."""
        if not running:
            return
        from stackctl import cli

        cli.check_ports()
        compose("up", "--detach", "--wait", "mlflow")
        cli.urls()

    def stop_writer(self) -> str:
        """Stop the tracking server, the only writer of the store: a backup after this holds
        every run logged before. Returns its container id when it was running."""
        running = compose("ps", "--status", "running", "--quiet", "mlflow", capture=True)
        if running.stdout.strip():
            compose("stop", "mlflow", stdout=sys.stderr)
        return running.stdout.strip()

    def team_backup(self) -> None:
        """The team databases (pg_dump, custom format) and the bucket's artifacts, one archive."""
        self.backups_folder()
        compose("up", "--detach", "--wait", "postgres", "s3")
        dumps = self.scratch("dumps")
        for database in DATABASES:
            with open(dumps / f"{database}.dump", "wb") as dump:
                compose(
                    "exec",
                    "-T",
                    "postgres",
                    "pg_dump",
                    "--format=custom",
                    f"--dbname={database}",
                    stdout=dump,
                )
        self._own(dumps, recursive=True)
        self.in_mlflow(
            [f"{self.backups}:/backups", _team_store_mount()],
            TEAM_STORE,
            "backup",
            f"/backups/{dumps.name}",
            f"/backups/mlflow-team-{stamp()}.tar.gz",
        )

    def backup(self) -> None:
        """Snapshot the active mode's store into backups/, as the host user."""
        if is_team():
            self.team_backup()
            return
        self.backups_folder()
        self.in_mlflow(
            [f"{self.backups}:/backups"], STORE, "backup", f"/backups/mlflow-{stamp()}.tar.gz"
        )

    def psql(self, sql: str, database: str = "postgres") -> int:
        """Run ``sql`` (read from standard input, ON_ERROR_STOP) in the postgres container as
        its superuser; psql's exit status. Without ``BEGIN`` each statement commits alone."""
        return subprocess.run(
            ["docker", "compose", "exec", "-T", "postgres", "psql", "--quiet", "--no-psqlrc",
             "--set=ON_ERROR_STOP=1", f"--dbname={database}"],
            cwd=str(ROOT), input=b"SET client_min_messages = warning;\n" + sql.encode(),
            stdout=subprocess.DEVNULL,
        ).returncode  # fmt: skip

    def drop_side_databases(self) -> None:
        """Drop what an earlier restore left beside the databases in use (none in use)."""
        self.psql(
            "".join(
                f"DROP DATABASE IF EXISTS {database}{side};\n"
                for database in DATABASES
                for side in (INCOMING, PREVIOUS)
            )
        )

    def team_restore(self, archive: Path) -> None:
        """Check the archive before changing anything; stop the server and back up; upload the
        archive's artifacts beside the old ones, restore each database into a new database
        beside the one in use, then swap both in one transaction (renames) and only then delete
        the old artifacts. Whatever fails before the swap leaves the store as it was, with the
        server started again; a kill at any point leaves one complete store."""
        name = archive.name
        self.backups_folder()
        staging = self.scratch("restore")
        compose("up", "--detach", "--wait", "postgres", "s3")
        self.in_mlflow(
            [f"{archive}:/restore/{name}:ro", f"{staging}:/staging", _team_store_mount()],
            TEAM_STORE,
            "check",
            f"/restore/{name}",
            "/staging",
        )
        for database in DATABASES:
            with open(staging / f"{database}.dump", "rb") as dump:
                listed = _with_stdin(
                    ["docker", "compose", "exec", "-T", "postgres", "pg_restore", "--list"],
                    dump,
                    quiet=True,
                )
            if listed != 0:
                raise Failure(
                    f"{database}.dump in {name} is not a readable pg_dump archive; nothing was "
                    "changed"
                )
        running = self.stop_writer()
        try:
            self.team_backup()
            self.drop_side_databases()
            # As the user who unpacked it: the archive's folders may be its owner's only
            self.in_mlflow(
                [f"{staging}:/staging:ro", _team_store_mount()],
                TEAM_STORE,
                "upload-artifacts",
                "/staging",
            )
            for database in DATABASES:
                self._restore_beside(database, staging, name)
        except Failure as failure:
            self.drop_side_databases()
            self.start_again(running)
            if not str(failure):
                # The step's own error line is above; this one says what that left
                say(f"restore: {KEPT}")
                raise
            raise Failure(f"{failure}; {KEPT}", status=failure.status) from None
        swapped = self.psql(
            "BEGIN;\n"
            + "".join(
                f"ALTER DATABASE {database} RENAME TO {database}{PREVIOUS};\n"
                f"ALTER DATABASE {database}{INCOMING} RENAME TO {database};\n"
                for database in DATABASES
            )
            + "COMMIT;\n"
        )
        if swapped != 0:
            self.drop_side_databases()
            self.start_again(running)
            raise Failure(
                f"the restored databases could not replace the ones in use (psql above); {KEPT}"
            )
        say("restore: databases swapped in")
        self.drop_side_databases()
        self.in_mlflow(
            [f"{staging}:/staging:ro", _team_store_mount()],
            TEAM_STORE,
            "prune-artifacts",
            "/staging",
        )
        self.start_again(running)
        say(f"restore: the team store's data now comes from {archive}")

    def _restore_beside(self, database: str, staging: Path, name: str) -> None:
        """pg_restore ``database``.dump from ``staging`` into a new database beside the one in
        use (<database>_incoming, owned by the tracking server's role), in one transaction.

        Raises:
            Failure: when it fails (pg_restore's errors are above).
        """
        incoming = f"{database}{INCOMING}"
        if self.psql(f"CREATE DATABASE {incoming} OWNER mlflow;\n") != 0:
            raise Failure(f"the database {incoming} could not be made (psql above)")
        with open(staging / f"{database}.dump", "rb") as dump:
            restored = _with_stdin(
                ["docker", "compose", "exec", "-T", "postgres", "pg_restore",
                 "--single-transaction", "--exit-on-error", f"--dbname={incoming}"],
                dump,
            )  # fmt: skip
        if restored != 0:
            raise Failure(f"pg_restore of {database} from {name} failed (above)")
        say(f"restore: database {database} restored beside the one in use")

    def restore(self, given: str) -> None:
        """Replace the active store's data with a backup archive, backing up first.

        Raises:
            Failure: no archive given, none there, a name Docker cannot mount, or the restore
                failed (the data as it was; the server started again when it ran).
        """
        if not given:
            raise Failure("say which backup to restore: make restore FILE=backups/<archive>.tar.gz")
        if not Path(given).is_file():
            raise Failure(f"no backup archive at {given}; 'ls backups' lists them")
        archive = Path(os.path.abspath(given))
        # Mounted under its own name (so errors name it); a volume spec splits at ':' and ','
        if ":" in archive.name or "," in archive.name:
            raise Failure(
                "the archive's name has a ':' or ',', which Docker cannot mount; rename it and "
                "run make restore again"
            )
        if is_team():
            self.team_restore(archive)
            return
        running = self.stop_writer()
        self.backup()
        # On failure store.py has said why in one line and left the data as it was
        restored = self.in_mlflow(
            [f"{archive}:/restore/{archive.name}:ro"],
            STORE,
            "restore",
            f"/restore/{archive.name}",
            as_user=False,
            check=False,
        )
        self.start_again(running)
        if restored.returncode != 0:
            raise Failure("", status=restored.returncode)
        say(f"restore: the MLflow data now comes from {archive}")

    def destroy(self, environ: Mapping[str, str]) -> None:
        """Delete the active mode's store (the other mode's volumes are kept), after a backup;
        asks unless CONFIRM=1.

        Raises:
            Failure: no terminal to ask and no CONFIRM=1, or the answer was not yes.
        """
        project = project_name()
        if is_team():
            volumes = [f"{project}_postgres-data", f"{project}_s3-data"]
            what = (
                f"the team store (volumes {' '.join(volumes)}); the SQLite store "
                f"({project}_mlflow-data) is kept"
            )
        else:
            volumes = [f"{project}_mlflow-data"]
            what = f"the SQLite store (volume {volumes[0]}); a team store's volumes are kept"
        if environ.get("CONFIRM") != "1":
            if not sys.stdin.isatty():
                raise Failure(
                    f"make destroy deletes every run, model and artifact of {what}, in project "
                    f"{project}; run it in a terminal, or with CONFIRM=1"
                )
            answer = input(
                f"Delete every run, model and artifact of {what} (a backup is made "
                "first)? Type yes: "
            )
            if answer.strip() != "yes":
                raise Failure("destroy cancelled; nothing was deleted")
        # Every writer stopped first: the backup then holds every run logged before destroy
        compose("--profile", "*", "down", "--remove-orphans")
        self.backup()
        compose("--profile", "*", "down", "--remove-orphans")
        for volume in volumes:
            if output(["docker", "volume", "inspect", volume]) is not None:
                run(["docker", "volume", "rm", volume], capture=True)
                say(f"destroy: deleted volume {volume}")
        say(f"destroy: {what}; the backup above restores it")

    def migrate(self) -> None:
        """Copy the SQLite store (mounted read-only) into an empty team store; the team server
        is stopped meanwhile, so nothing else writes there.

        Raises:
            Failure: not in team mode, no SQLite store, or the migration failed (said above).
        """
        if not is_team():
            raise Failure(
                "make migrate-store moves the SQLite store into the team store: run make "
                "migrate-store TEAM=1"
            )
        volume = f"{project_name()}_mlflow-data"
        if output(["docker", "volume", "inspect", volume]) is None:
            raise Failure(
                f"no SQLite store to migrate (no volume {volume}); the team store is left as it "
                "is"
            )
        running = self.stop_writer()
        compose("up", "--detach", "--wait", "postgres", "s3")
        migrated = self.in_mlflow(
            [f"{volume}:/data:ro", _team_store_mount()],
            TEAM_STORE,
            "migrate",
            "/data",
            as_user=False,
            check=False,
        )
        self.start_again(running)
        if migrated.returncode != 0:
            raise Failure("", status=migrated.returncode)


def _with_stdin(args: List[str], source, quiet: bool = False) -> int:
    """Run ``args`` in the project folder with a binary file as standard input (a dump);
    its exit status. ``quiet`` discards its output."""
    sink = subprocess.DEVNULL if quiet else None
    return subprocess.run(args, cwd=str(ROOT), stdin=source, stdout=sink, stderr=sink).returncode


# Run in the mlflow container beside the server, as its client (with auth on, as its admin):
# gc deletes the runs' proxied artifacts through the tracking server. In Python there, so the
# backend store URI (a password in team mode) is on no command line
GC = r"""
export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
export MLFLOW_TRACKING_USERNAME="$MLFLOW_AUTH_ADMIN_USERNAME"
export MLFLOW_TRACKING_PASSWORD="$MLFLOW_AUTH_ADMIN_PASSWORD"
python -c "import os; from mlflow.cli import cli; cli.main([\"gc\", \"--backend-store-uri\", os.environ[\"MLFLOW_BACKEND_STORE_URI\"]], prog_name=\"mlflow\")"
"""
# The object store keeps a deleted object's bytes until its volume is vacuumed (on its own
# only past 30 % garbage, every 15 minutes): gc compacts every volume holding any garbage, with
# SeaweedFS's admin shell on the container's loopback (it takes no keys; vacuum needs its lock)
VACUUM = (
    "printf 'lock\\nvolume.vacuum -garbageThreshold 0.0001\\nunlock\\n' | "
    "weed shell -master=127.0.0.1:9333"
)
# How many backups of each mode make gc keeps, unless MLSTACK_BACKUPS_KEPT (.env) says
BACKUPS_KEPT = 5
# What make's store commands leave in backups/ when killed: older than this, gc removes it
LEFTOVER_AGE = 3600


def old_backups(names: Sequence[str], kept: int) -> List[str]:
    """The archives among ``names`` (file names in backups/) that gc deletes: of make's own
    archives (mlflow-<stamp>.tar.gz of the SQLite store, mlflow-team-<stamp>.tar.gz of the
    team store) all but the newest ``kept`` of each mode; any other file is the user's and
    stays. Sorted."""
    doomed = []
    for pattern in ("mlflow-2*.tar.gz", "mlflow-team-2*.tar.gz"):
        mode = sorted(name for name in names if fnmatch.fnmatchcase(name, pattern))
        doomed += mode[: max(len(mode) - kept, 0)]
    return sorted(doomed)


def prune_backups(folder: Path, kept: int, now: float) -> int:
    """Delete the archives :func:`old_backups` names and what killed store commands left
    (hidden partial archives and scratch folders older than LEFTOVER_AGE seconds at ``now``);
    the bytes freed."""
    freed = 0
    names = [path.name for path in folder.iterdir() if path.is_file()]
    for name in old_backups(names, kept):
        freed += (folder / name).stat().st_size
        (folder / name).unlink()
        say(f"gc: deleted the old backup {name}")
    for path in folder.glob(".*"):
        if now - path.stat().st_mtime < LEFTOVER_AGE:
            continue
        if path.is_dir():
            freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.endswith(".partial"):
            freed += path.stat().st_size
            path.unlink()
    return freed


def server_reason() -> str:
    """The tracking server's last meaningful log line (an ``error:`` line when it has one),
    or what compose says of its state."""
    logs = compose("logs", "--no-log-prefix", "--tail", "20", "mlflow", check=False, capture=True)
    lines = [line.strip() for line in (logs.stdout + logs.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    return (errors or lines or ["it wrote no log"])[-1]


def artifact_store(team: bool) -> tuple:
    """(service, volume) holding the active mode's artifacts at /data: the object store's
    s3-data in team mode, else the tracking server's mlflow-data."""
    return ("s3", "s3-data") if team else ("mlflow", "mlflow-data")


def used_bytes(service: str) -> int:
    """Bytes under /data in the running ``service``'s container (du)."""
    result = compose("exec", "-T", service, "du", "-sb", "/data", capture=True)
    return int(result.stdout.split()[0])


def gc() -> None:
    """After a backup (which still holds them), free the disk space of what was deleted in the
    MLflow UI with ``mlflow gc`` in the mlflow service's container (started if down); in team
    mode, then compact the object store's volumes. Keeps the newest MLSTACK_BACKUPS_KEPT
    backups of each mode (.env, default BACKUPS_KEPT). Says what it freed in the active mode's
    artifact store (mlflow-data, or the object store's s3-data) and in backups/.

    Raises:
        Failure: MLSTACK_BACKUPS_KEPT is not a whole number of at least 1 (nothing done), or a
            step failed (said above).
    """
    setting = EnvFile.load().get("MLSTACK_BACKUPS_KEPT") or str(BACKUPS_KEPT)
    if not setting.isdigit() or int(setting) < 1:
        raise Failure(
            f"MLSTACK_BACKUPS_KEPT={setting} in .env is not a whole number of at least 1; set "
            f"one (or remove the line for {BACKUPS_KEPT}) and run make gc again"
        )
    store = Store()
    try:
        store.backup()
    finally:
        store.close()
    pruned = prune_backups(store.backups, int(setting), time.time())
    team = is_team()
    started = compose("up", "--detach", "--wait", "mlflow", check=False, capture=True)
    if started.returncode != 0:
        raise Failure(
            "the tracking server did not start, so nothing was collected (the backup above "
            f"stands): {server_reason()}; 'docker compose logs mlflow' shows more"
        )
    service, volume = artifact_store(team)
    before = used_bytes(service)
    compose("exec", "-T", "mlflow", "sh", "-ec", GC)
    if team:
        compose("exec", "-T", "s3", "sh", "-ec", VACUUM)
    freed = max(before - used_bytes(service), 0)
    say(
        f"gc: freed {freed} bytes ({human(freed)}) of deleted runs, experiments and models in "
        f"{volume}; the backup above still holds them"
    )
    say(f"gc: backups/ holds the newest {setting} of each mode; freed {human(pruned)} there")


def human(count: float) -> str:
    """A byte count for people: 1.5G, 20M, 512 (binary units, like numfmt --to=iec)."""
    for unit in ("", "K", "M", "G", "T"):
        if count < 1024 or unit == "T":
            return f"{count:.0f}{unit}" if not unit or count >= 10 else f"{count:.1f}{unit}"
        count /= 1024
    return str(count)
