"""Care of the tracking server's data on /data: the SQLite backend store (mlflow.db), the basic-
auth user store (basic_auth.db) and the artifact store (artifacts/).

    python store.py prepare          before the server starts (images/mlflow/start.sh)
    python store.py credentials      the basic-auth admin's password from the environment
    python store.py backup ARCHIVE   consistent snapshot of /data into a .tar.gz (make backup)
    python store.py restore ARCHIVE  replace /data with an archive's content (make restore)
    python store.py head             the schema revision this MLflow migrates to (build time)

prepare: a new store needs nothing (the server creates its tables), nor one at this MLflow's
schema revision; one from an older MLflow is snapshotted beside itself, then migrated with
`mlflow db upgrade` (there is no downgrade); one migrated by a newer MLflow is left untouched and
prepare exits 3 with one line saying so. A store on a database server (the team stack's
PostgreSQL) is waited for (MLSTACK_STORE_WAIT seconds, default 120: after a reboot the server
may start first), then migrated unless it is at this MLflow's revision already. Migrations run
in this process: the URI holds the database password, which never goes on a command line, and
errors are printed with it masked.

credentials: a user store made under an earlier .env keeps the passwords it was made with; each
start sets the admin's again from MLFLOW_AUTH_ADMIN_PASSWORD and the stack user's (whom jobs and
notebooks log in as) from MLSTACK_TRACKING_PASSWORD (.env), so a regenerated .env reaches the
same data.

restore is crash-safe: the archive is unpacked into /data/.restore-incoming and checked, then
marked ready; only then are the old entries moved to /data/.restore-previous and the new ones
moved in (renames on one file system), each phase recorded by a marker file. `prepare`, at the
next server start, finishes a swap that was marked ready and discards one that was not, so a
kill at any point leaves one complete store. Each command prints one `error:` line on failure.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tarfile
import tempfile
import time
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

DATA = Path("/data")
# The schema revision this image's MLflow migrates to, written at build time (`store.py head`):
# reading it spares alembic's scan of every migration script (seconds) at each server start
SCHEMA_HEAD = Path("/opt/mlstack/schema-head")
DATABASES = ("mlflow.db", "basic_auth.db")
ARTIFACTS = "artifacts"
NEEDS_A_HUMAN = 3
# The restore's staging folder and where the replaced store waits until the swap is complete
INCOMING = DATA / ".restore-incoming"
PREVIOUS = DATA / ".restore-previous"
# Markers in INCOMING: READY once the archive is unpacked and checked (the swap may start),
# SWAPPING once every old entry is out of the way (only new entries move from then on)
READY, SWAPPING = ".ready", ".swapping"
# Entries of /data that a restore never replaces: the snapshots taken before schema upgrades
KEPT = {"backups", INCOMING.name, PREVIOUS.name}


class StoreError(RuntimeError):
    """A store operation that cannot go on; its message is the user's one line."""


class StoreUnreachable(StoreError):
    """The database server of the backend store did not answer in time: worth a retry (the
    container exits 1 and its restart policy starts it again)."""


def open_store(path: Path) -> sqlite3.Connection:
    """A connection to the existing SQLite database ``path`` (never creates one), read-write
    although the callers only read: a server killed in the middle of a write leaves a hot
    journal, which only a writer can roll back. Read-only, SQLite answers "attempt to write a
    readonly database" and the tracking server would never start again."""
    return sqlite3.connect(f"file:{path}?mode=rw", uri=True)


def sqlite_snapshot(source: Path, target: Path) -> None:
    """Copy a live SQLite database with SQLite's online backup API (consistent even while the
    server writes), then check the copy with ``PRAGMA integrity_check``.

    Raises:
        StoreError: when the copy is not intact.
    """
    with open_store(source) as live:
        with sqlite3.connect(target) as copy:
            live.backup(copy)
            (result,) = copy.execute("PRAGMA integrity_check").fetchone()
    if result != "ok":
        raise StoreError(f"the snapshot of {source} is not intact: {result}")


def integrity(path: Path) -> str:
    """SQLite's ``PRAGMA integrity_check`` of a database file: ``"ok"`` or the problems."""
    with open_store(path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def schema_revisions():
    """MLflow's own migration scripts (an alembic ScriptDirectory): the revisions it knows."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    # Found without importing mlflow, which takes seconds at every server start
    migrations = Path(find_spec("mlflow").origin).parent / "store" / "db_migrations"
    config = Config()
    config.set_main_option("script_location", str(migrations))
    return ScriptDirectory.from_config(config)


def store_revision(path: Path) -> str | None:
    """The alembic revision a SQLite store is at, or None for a new store (no tables yet)."""
    with open_store(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if "alembic_version" not in tables:
            return None
        row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def read_schema_head() -> str | None:
    """This MLflow's schema revision as written at build time (SCHEMA_HEAD), or None."""
    return SCHEMA_HEAD.read_text().strip() if SCHEMA_HEAD.exists() else None


def server_store_revision(uri: str) -> str | None:
    """The alembic revision of a backend store on a database server (the team stack's
    PostgreSQL), or None for a new database (no alembic_version table yet).

    Raises:
        sqlalchemy.exc.OperationalError: when the database cannot be reached.
    """
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(uri)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def masked(text: str, uri: str) -> str:
    """``text`` with the password of database URI ``uri`` replaced by ``***``."""
    from sqlalchemy.engine import make_url

    password = make_url(uri).password
    return text.replace(password, "***") if password else text


def wait_for_server_store(uri: str) -> str | None:
    """The revision of the backend store on a database server (see server_store_revision),
    retried every 2 s while the server cannot be reached, for MLSTACK_STORE_WAIT seconds
    (default 120).

    Raises:
        StoreError: when it cannot be reached in that time (the message has no password).
    """
    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + float(os.environ.get("MLSTACK_STORE_WAIT", "120"))
    said = False
    while True:
        try:
            return server_store_revision(uri)
        except OperationalError as error:
            reason = masked(str(error.orig or error).strip().splitlines()[0], uri)
            if time.monotonic() > deadline:
                raise StoreUnreachable(f"the backend store cannot be reached: {reason}") from None
            if not said:
                print(f"waiting for the backend store: {reason}", flush=True)
                said = True
            time.sleep(2)


def upgrade(uri: str) -> int:
    """Bring the backend store at ``uri`` to this MLflow's schema, as `mlflow db upgrade` does,
    but in this process: a PostgreSQL URI holds the password.

    Returns:
        0.

    Raises:
        StoreError: when the migration fails (its message with the password masked).
    """
    from mlflow.store.db import utils

    engine = utils.create_sqlalchemy_engine_with_retry(uri)
    try:
        if utils._is_empty_database(engine):
            utils._initialize_tables(engine)
        else:
            utils._upgrade_db(engine)
    except Exception as error:  # noqa: BLE001 - any failure becomes the user's one line
        reason = " ".join(str(error).split())[:500]
        raise StoreError(
            f"the schema upgrade of the backend store failed: {masked(reason, uri)}"
        ) from None
    finally:
        engine.dispose()
    return 0


def prepare() -> int:
    """Bring the backend store (MLFLOW_BACKEND_STORE_URI) to this MLflow's schema.

    Returns:
        The exit status of `mlflow db upgrade`, or 0 when there is nothing to do.

    Raises:
        StoreError: when a newer MLflow migrated the store.
    """
    uri = os.environ.get("MLFLOW_BACKEND_STORE_URI", "")
    if not uri.startswith("sqlite:///"):
        if not uri or wait_for_server_store(uri) == read_schema_head():
            return 0
        # A new database too: migrated here once, not by each of the server's workers at once
        return upgrade(uri)
    finish_restore()
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.exists() or path.stat().st_size == 0:
        return 0
    current = store_revision(path)
    if current is None or (SCHEMA_HEAD.exists() and current == SCHEMA_HEAD.read_text().strip()):
        return 0
    scripts = schema_revisions()
    latest = scripts.get_current_head()
    if current == latest:
        return 0
    # Here, not at the top: importing alembic takes 0.25 s of every start, which needs it only
    # when the store is behind
    from alembic.util.exc import CommandError

    try:
        scripts.get_revision(current)
    except CommandError:
        raise StoreError(
            f"the backend store {path} is at schema revision {current}, which MLflow "
            f"{version('mlflow')} does not know: a newer MLflow migrated it. Run that MLflow "
            "version, or restore a backup made before (make restore FILE=...); the store is "
            "left as it is"
        ) from None
    stamp = time.strftime("%Y%m%dT%H%M%S")
    snapshot = path.parent / "backups" / f"{path.stem}-{current}-{stamp}.db"
    snapshot.parent.mkdir(exist_ok=True)
    sqlite_snapshot(path, snapshot)
    print(f"backend store at schema revision {current}, upgrading to {latest}; copy: {snapshot}")
    return upgrade(uri)


def credentials() -> int:
    """Set the users of MLFLOW_AUTH_CONFIG_PATH's user store from the environment (.env): the
    basic-auth admin's password (MLFLOW_AUTH_ADMIN_USERNAME, MLFLOW_AUTH_ADMIN_PASSWORD) when that
    admin exists with another one (a new store's admin is made by the server), and the user
    jobs and notebooks log in as (MLSTACK_TRACKING_USERNAME, MLSTACK_TRACKING_PASSWORD): made
    when missing, its password set again, never an admin (a store made before the admin was
    split off had that name as its admin).

    Returns:
        0.
    """
    from mlflow.server.auth.config import read_auth_config
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    config = read_auth_config()
    username, password = config.admin_username, config.admin_password
    member = os.environ.get("MLSTACK_TRACKING_USERNAME", "")
    member_password = os.environ.get("MLSTACK_TRACKING_PASSWORD", "")
    store = SqlAlchemyStore()
    store.init_db(config.database_uri)
    try:
        if username and password:
            if store.has_user(username) and not store.authenticate_user(username, password):
                store.update_user(username, password=password, is_admin=True)
                print(f"auth: the password of admin {username} was set from .env")
        if member and member_password and member != username:
            if not store.has_user(member):
                store.create_user(member, member_password, is_admin=False)
                print(f"auth: made user {member}, whom jobs and notebooks log in as")
            elif store.get_user(member).is_admin or not store.authenticate_user(
                member, member_password
            ):
                store.update_user(member, password=member_password, is_admin=False)
                print(f"auth: user {member} set from .env (not an admin: {username} is)")
            grant_ownerless(store, member)
    finally:
        store.engine.dispose()
    return 0


def grant_ownerless(store, member: str) -> None:
    """Give ``member`` MANAGE on every experiment and registered model of the backend store
    (MLFLOW_BACKEND_STORE_URI) that no user has a permission on: what was logged before auth
    was on, or migrated from the SQLite store, is the stack user's (with default_permission READ
    it could no longer log runs there). A new store without tables is skipped."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    uri = os.environ.get("MLFLOW_BACKEND_STORE_URI", "")
    if not uri:
        return
    engine = create_engine(uri)
    try:
        with engine.connect() as backend:
            experiments = [
                str(row[0])
                for row in backend.execute(text("SELECT experiment_id FROM experiments"))
            ]
            models = [row[0] for row in backend.execute(text("SELECT name FROM registered_models"))]
    except SQLAlchemyError:
        return
    finally:
        engine.dispose()
    with store.engine.connect() as auth:
        owned = set(
            auth.execute(text("SELECT resource_type, resource_pattern FROM role_permissions")).all()
        )
    granted = 0
    for experiment in experiments:
        if ("experiment", experiment) not in owned:
            store.create_experiment_permission(experiment, member, "MANAGE")
            granted += 1
    for model in models:
        if ("registered_model", model) not in owned:
            store.create_registered_model_permission(model, member, "MANAGE")
            granted += 1
    if granted:
        print(f"auth: {member} manages the {granted} experiments and models no user had")


def backup(archive: Path) -> int:
    """Write the databases (online snapshots) and the artifact store into ``archive`` (.tar.gz).

    Raises:
        StoreError: when a snapshot is not intact.
    """
    if not (DATA / "mlflow.db").exists():
        artifacts = sum(1 for path in (DATA / ARTIFACTS).rglob("*") if path.is_file())
        if artifacts:
            # A damaged store: a backup without its runs would look whole, and make destroy
            # would then delete the artifacts it could not restore
            raise StoreError(
                f"the store holds {artifacts} artifact files but no backend store (mlflow.db); "
                "nothing was backed up or deleted: copy the volume's files out by hand first"
            )
        print("backup: nothing to back up (no backend store yet)")
        return 0
    partial = archive.with_name(f".{archive.name}.partial")
    try:
        # Beside the archive, on the host's disk: /tmp is a tmpfs, where a large database
        # would take its size in memory
        with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".snapshot-") as scratch:
            with tarfile.open(partial, "w:gz") as tar:
                for name in DATABASES:
                    if (DATA / name).exists():
                        sqlite_snapshot(DATA / name, Path(scratch) / name)
                        tar.add(Path(scratch) / name, arcname=name)
                tar.add(DATA / ARTIFACTS, arcname=ARTIFACTS)
    except BaseException:
        # A failed backup leaves nothing behind to fill the disk
        partial.unlink(missing_ok=True)
        raise
    # Renamed only when complete: a backup cut short never looks like a good one
    partial.rename(archive)
    print(f"backup: {archive.name}")
    return 0


def restore(archive: Path) -> int:
    """Replace /data's content with ``archive``'s, once the archive is known to be whole; the
    swap is crash-safe (see the module's docstring). Run with the server stopped.

    Raises:
        StoreError: when the archive is missing, unreadable, not a backup or damaged; /data is
            then left as it was.
    """
    if not archive.is_file():
        raise StoreError(f"no backup archive at {archive}")
    # What an earlier, interrupted restore left is finished (marked ready) or dropped first
    finish_restore()
    INCOMING.mkdir()
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(INCOMING, filter="data")
        except (tarfile.TarError, OSError, EOFError) as error:
            raise StoreError(f"{archive.name} is not a readable backup archive: {error}") from None
        if not (INCOMING / "mlflow.db").is_file():
            raise StoreError(f"{archive.name} holds no mlflow.db: not an mlstack backup")
        for name in DATABASES:
            if (INCOMING / name).exists() and (result := integrity(INCOMING / name)) != "ok":
                raise StoreError(f"{name} in {archive.name} is damaged: {result}")
        (INCOMING / ARTIFACTS).mkdir(exist_ok=True)
    except BaseException:
        shutil.rmtree(INCOMING, ignore_errors=True)
        raise
    durable(INCOMING / READY)
    finish_restore()
    print("restore: done")
    return 0


def durable(marker: Path) -> None:
    """Create the empty file ``marker`` and sync it and its folder to disk."""
    with open(marker, "w") as handle:
        os.fsync(handle.fileno())
    folder = os.open(marker.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def finish_restore() -> None:
    """Finish or drop a restore's swap (idempotent; nothing to do without INCOMING).

    Without READY the restore had not checked its archive yet: INCOMING is deleted and /data
    keeps its store. With READY, every old entry is moved to PREVIOUS, SWAPPING is marked, every
    new entry is moved in, then INCOMING and PREVIOUS are deleted.
    """
    if INCOMING.exists():
        if not (INCOMING / READY).exists() and not (INCOMING / SWAPPING).exists():
            shutil.rmtree(INCOMING)
        else:
            if not (INCOMING / SWAPPING).exists():
                PREVIOUS.mkdir(exist_ok=True)
                for entry in DATA.iterdir():
                    if entry.name not in KEPT:
                        entry.rename(PREVIOUS / entry.name)
                (INCOMING / READY).rename(INCOMING / SWAPPING)
            for entry in INCOMING.iterdir():
                if entry.name not in (READY, SWAPPING):
                    entry.rename(DATA / entry.name)
            shutil.rmtree(INCOMING)
    shutil.rmtree(PREVIOUS, ignore_errors=True)


def head() -> int:
    """Print the schema revision this MLflow migrates to (for SCHEMA_HEAD, at build time)."""
    print(schema_revisions().get_current_head())
    return 0


def main(argv: list[str]) -> int:
    """Run one command line (see the module's docstring); returns the exit status."""
    commands = {
        "prepare": (prepare, 0),
        "credentials": (credentials, 0),
        "backup": (backup, 1),
        "restore": (restore, 1),
        "head": (head, 0),
    }
    if not argv or argv[0] not in commands or len(argv) - 1 != commands[argv[0]][1]:
        print(
            "usage: store.py prepare | credentials | backup ARCHIVE | restore ARCHIVE | head",
            file=sys.stderr,
        )
        return 2
    command = commands[argv[0]][0]
    try:
        return command(*(Path(arg) for arg in argv[1:]))
    except (StoreError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return (
            NEEDS_A_HUMAN if command is prepare and not isinstance(error, StoreUnreachable) else 1
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
