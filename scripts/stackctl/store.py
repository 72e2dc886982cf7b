"""The tracking server's data: backup, restore, destroy, the move of the SQLite store into the
team store, and garbage collection. The SQLite default keeps everything on the mlflow-data
volume; team mode (compose.team.yaml) has PostgreSQL's databases and the object store's bucket.
The work inside containers is done by the mlflow image's store.py and scripts/team_store.py."""

from __future__ import annotations

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

    def team_restore(self, archive: Path) -> None:
        """Check the archive before changing anything; stop the server, back up, then swap in
        an order where an interruption leaves one complete store: artifacts uploaded beside the
        old ones, each database restored in one transaction, only then old artifacts deleted."""
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
        self.team_backup()

        def artifacts(action: str) -> None:
            # As the user who unpacked it: the archive's folders may be its owner's only
            self.in_mlflow(
                [f"{staging}:/staging:ro", _team_store_mount()], TEAM_STORE, action, "/staging"
            )

        artifacts("upload-artifacts")
        for database in DATABASES:
            with open(staging / f"{database}.dump", "rb") as dump:
                restored = _with_stdin(
                    [
                        "docker",
                        "compose",
                        "exec",
                        "-T",
                        "postgres",
                        "pg_restore",
                        "--clean",
                        "--if-exists",
                        "--single-transaction",
                        "--exit-on-error",
                        f"--dbname={database}",
                    ],
                    dump,
                )
            if restored != 0:
                raise Failure(
                    f"pg_restore of {database} failed (above); that database is as it was; the "
                    "backup above holds all"
                )
            say(f"restore: database {database} restored")
        artifacts("prune-artifacts")
        self.start_again(running)
        say(f"restore: the team store's data now comes from {archive}")

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
before="$(du -sb /data | cut -f1)"
python -c "import os; from mlflow.cli import cli; cli.main([\"gc\", \"--backend-store-uri\", os.environ[\"MLFLOW_BACKEND_STORE_URI\"]], prog_name=\"mlflow\")"
freed=$((before - $(du -sb /data | cut -f1)))
echo "gc: freed $freed bytes ($(numfmt --to=iec -- "$freed")B) of deleted runs, experiments and models; the backup above still holds them"
"""


def gc() -> None:
    """After a backup (which still holds them), free the disk space of what was deleted in the
    MLflow UI with ``mlflow gc``, in the mlflow service's container (started if down); says
    how many bytes of the volume it freed."""
    store = Store()
    try:
        store.backup()
    finally:
        store.close()
    compose("up", "--detach", "--wait", "mlflow", quiet=True)
    compose("exec", "-T", "mlflow", "sh", "-ec", GC)
