"""The team store's care, run by make's store commands (scripts/stackctl/store.py) in the mlflow container of the team stack
(compose.team.yaml: MLFLOW_BACKEND_STORE_URI on PostgreSQL, MLFLOW_ARTIFACTS_DESTINATION in the
S3 object store, whose keys only that container holds). Bind-mounted read-only, not in the image.

    python team_store.py migrate SOURCE             SQLite store folder (mlflow-data, read-only)
                                                    into an empty team store (make migrate-store)
    python team_store.py backup DUMPS ARCHIVE       the dumps in DUMPS (pg_dump) and the bucket's
                                                    artifacts into one .tar.gz (make backup)
    python team_store.py check ARCHIVE STAGING      unpack a team backup into STAGING, checking
                                                    its members (make restore)
    python team_store.py upload-artifacts STAGING   STAGING's artifacts into the bucket (make restore)
    python team_store.py prune-artifacts STAGING    the bucket's objects STAGING lacks deleted

migrate uploads the artifact files to the bucket under the same relative keys (the stored
`mlflow-artifacts:/...` URIs resolve against the server's artifacts destination, so each stays
valid), then copies every table of MLflow's schema row by row (both stores are SQLAlchemy
databases at the same alembic revision) in foreign-key order and one transaction; when either
fails, the uploaded objects are deleted again: the team store is left empty, never with runs
whose artifacts are missing. The SQLite database is read from a
snapshot in /tmp (upgraded there if an older MLflow wrote it): the volume is never written. The
basic-auth user store is not migrated: the team server has its own admin (.env). Each command
prints one `error:` line on failure and exits 1.
"""

from __future__ import annotations

import os
import re
import sys
import tarfile
import tempfile
from pathlib import Path

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Boolean, MetaData, create_engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from store import (
    StoreError,
    masked,
    read_schema_head,
    server_store_revision,
    sqlite_snapshot,
    upgrade,
)

# The folder of the SQLite default's artifact store inside mlflow-data (see images/mlflow)
ARTIFACTS = "artifacts"
# Members of a team backup archive
DUMPS = ("mlflow.dump", "mlflow_auth.dump")
# Rows MLflow makes by itself in a new store: the Default experiment (id 0) with its tags, the
# default workspace and the server's scheduling state; any other row means the store is in use
DEFAULT_EXPERIMENT = 0
SERVER_MADE = ("workspaces", "scheduler_leases", "job_locks")
# Columns holding artifact URIs: older stores may hold the server's local path instead of
# mlflow-artifacts:/, which would not resolve on the team server
URI_COLUMNS = {
    "experiments": ("artifact_location",),
    "runs": ("artifact_uri",),
    "logged_models": ("artifact_location",),
    "model_versions": ("source", "storage_location"),
}
LOCAL_ROOTS = ("file:///data/artifacts/", "/data/artifacts/")
# The counts printed before and after, by label: table name and an optional SQL filter
COUNTED = {
    "experiments": ("experiments", None),
    "runs": ("runs", None),
    "metric rows": ("metrics", None),
    "params": ("params", None),
    "run tags": ("tags", None),
    "datasets": ("datasets", None),
    "run inputs": ("inputs", None),
    "registered models": ("registered_models", None),
    "model versions": ("model_versions", None),
    "model aliases": ("registered_model_aliases", None),
    "logged models": ("logged_models", None),
}
BATCH = 5000


def destination() -> tuple[str, str]:
    """(bucket, key prefix ending in /) of MLFLOW_ARTIFACTS_DESTINATION (s3://bucket/prefix)."""
    uri = os.environ["MLFLOW_ARTIFACTS_DESTINATION"]
    if not uri.startswith("s3://"):
        raise StoreError(f"the artifacts destination {uri} is not s3://: is TEAM=1 on?")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/") + "/"


# Errors of the object store or of the way to it, each turned into the user's one line
S3_ERRORS = (BotoCoreError, ClientError, Boto3Error)


def s3_client():
    """A boto3 S3 client for the object store (MLFLOW_S3_ENDPOINT_URL, keys from AWS_*), with
    botocore's standard retries (10 attempts): a just-started object store answers
    InternalError until its volume server has joined."""
    return boto3.client(
        "s3",
        endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"],
        config=Config(retries={"max_attempts": 10, "mode": "standard"}),
    )


def s3_reason(error: BaseException) -> str:
    """One line of an object store error: the S3 error's code and message (from the error or
    the one it wraps: boto3's upload error quotes it after the file's whole path), or the
    exception's text."""
    cause = error
    while cause is not None and not isinstance(cause, ClientError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ClientError):
        details = cause.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '')}".strip()
    quoted = re.search(
        r"An error occurred \((\w+)\) when calling the \w+ operation(?: \([^)]*\))?: (.*)",
        str(error),
    )
    if quoted:
        return f"{quoted[1]}: {quoted[2]}"
    return " ".join(str(error).split())[:300]


def bucket_objects(s3) -> dict[str, int]:
    """The artifact objects in the bucket: key relative to the prefix → size in bytes."""
    bucket, prefix = destination()
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"].removeprefix(prefix)] = item["Size"]
    return found


def local_files(root: Path) -> dict[str, int]:
    """The files under ``root``: path relative to it (with /) → size in bytes."""
    if not root.is_dir():
        return {}
    return {
        path.relative_to(root).as_posix(): path.stat().st_size
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def table_counts(connection, metadata: MetaData) -> dict[str, int]:
    """Rows per table of ``metadata`` (reflected), alembic_version left out."""
    return {
        name: connection.execute(select(func.count()).select_from(table)).scalar()
        for name, table in metadata.tables.items()
        if name != "alembic_version"
    }


def summary(counts: dict[str, int], files: dict[str, int]) -> dict[str, int]:
    """The figures users know (COUNTED) plus artifact files and bytes."""
    figures = {label: counts.get(table, 0) for label, (table, _) in COUNTED.items()}
    figures["artifact files"] = len(files)
    figures["artifact bytes"] = sum(files.values())
    return figures


def local_uri(value):
    """``value`` with a local artifact path of the SQLite default turned into mlflow-artifacts:/
    (what the team server resolves in the bucket); other values unchanged."""
    if isinstance(value, str):
        for root in LOCAL_ROOTS:
            if value.startswith(root):
                return "mlflow-artifacts:/" + value.removeprefix(root)
    return value


def foreign_rows(counts: dict[str, int], connection) -> list[str]:
    """Tables of the team store holding rows that a new server does not make itself."""
    busy = []
    for name, rows in counts.items():
        if not rows or name in SERVER_MADE:
            continue
        if name in ("experiments", "experiment_tags"):
            others = connection.execute(
                text(f"SELECT count(*) FROM {name} WHERE experiment_id <> :default"),
                {"default": DEFAULT_EXPERIMENT},
            ).scalar()
            if not others:
                continue
        busy.append(name)
    return busy


def migrate(source: Path) -> int:
    """Copy the SQLite store in ``source`` (mlflow.db and artifacts/) into the team store.

    Raises:
        StoreError: when there is nothing to migrate, the team store is not empty, or the
            counts after the copy differ from those before.
    """
    database = source / "mlflow.db"
    if not database.is_file():
        raise StoreError("the SQLite store holds no mlflow.db: nothing to migrate")
    team_uri = os.environ["MLFLOW_BACKEND_STORE_URI"]
    s3 = s3_client()
    bucket, prefix = destination()
    head = read_schema_head()
    with tempfile.TemporaryDirectory() as scratch:
        snapshot = Path(scratch) / "mlflow.db"
        sqlite_snapshot(database, snapshot)
        sqlite_uri = f"sqlite:///{snapshot}"
        # A store written by an older MLflow is upgraded in the snapshot only
        if server_store_revision(sqlite_uri) != head:
            upgrade(sqlite_uri)
        if server_store_revision(team_uri) != head:
            upgrade(team_uri)
        files = local_files(source / ARTIFACTS)
        source_engine, team_engine = create_engine(sqlite_uri), create_engine(team_uri)
        try:
            refuse_a_used_store(team_engine, s3)
            # Artifacts first, the databases' one transaction last: a failure of either leaves
            # the team store empty (what was uploaded is deleted again); never runs whose
            # artifacts are missing
            uploaded_keys = []
            try:
                for relative in files:
                    upload(s3, source / ARTIFACTS / relative, bucket, prefix + relative)
                    uploaded_keys.append(prefix + relative)
                before, after = copy_tables(source_engine, team_engine)
            except (StoreError, SQLAlchemyError) as error:
                remove_objects(s3, bucket, uploaded_keys)
                reason = " ".join(str(error).split())[:500]
                raise StoreError(
                    f"{masked(reason, team_uri)}; nothing was migrated: the team store is empty "
                    "again and the SQLite store untouched. Run make migrate-store again once "
                    "that is fixed"
                ) from None
            except BaseException:
                remove_objects(s3, bucket, uploaded_keys)
                raise
        finally:
            source_engine.dispose()
            team_engine.dispose()
    uploaded = bucket_objects(s3)
    before_figures, after_figures = summary(before, files), summary(after, uploaded)
    print(f"{'':<20}{'SQLite':>14}{'team store':>14}")
    for label, count in before_figures.items():
        print(f"{label:<20}{count:>14}{after_figures[label]:>14}")
    differ = [name for name in before if before[name] != after.get(name)]
    if before_figures != after_figures or differ:
        raise StoreError(
            f"the team store's counts differ from the SQLite store's ({', '.join(differ) or 'artifacts'}); "
            "the SQLite store is untouched: empty the team store with make destroy (it backs the team "
            "store up and deletes only its volumes), then run make migrate-store again"
        )
    print("migrate-store: done; the SQLite store (mlflow-data) is left as it was")
    return 0


def refuse_a_used_store(team_engine, s3) -> None:
    """Raise StoreError when the team store holds data (rows a new server does not make, or
    objects in the bucket): a migration goes only into an empty one."""
    team_meta = MetaData()
    with team_engine.connect() as team:
        team_meta.reflect(team)
        busy = foreign_rows(table_counts(team, team_meta), team)
    if busy or bucket_objects(s3):
        raise StoreError(
            "the team store is not empty "
            f"({', '.join(busy) or 'artifacts in the bucket'}); nothing was copied. "
            "Migrate only into an empty team store: make destroy backs this one up and deletes only "
            "its volumes (the SQLite store stays), then run make migrate-store again"
        )


def upload(s3, path: Path, bucket: str, key: str) -> None:
    """Upload the file ``path`` to ``bucket``/``key``.

    Raises:
        StoreError: when the object store refuses it or cannot be reached (one line naming
            the file and the object store's reason).
    """
    try:
        s3.upload_file(str(path), bucket, key)
    except S3_ERRORS as error:
        raise StoreError(f"the object store refused {path.name} ({s3_reason(error)})") from None


def remove_objects(s3, bucket: str, keys: list[str]) -> None:
    """Delete ``keys`` from ``bucket``, 1000 per request (S3's limit); best effort: a failure
    here is reported on one line and does not hide the error that led here."""
    try:
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk]})
    except S3_ERRORS as error:
        print(f"warning: uploaded artifacts could not be deleted again: {s3_reason(error)}")


def copy_tables(source_engine, team_engine) -> tuple[dict[str, int], dict[str, int]]:
    """Copy every table's rows from ``source_engine`` into ``team_engine`` in one transaction.

    Returns:
        (rows per table before, in the SQLite store; rows per table after, in the team store).

    Raises:
        StoreError: when the schema revisions differ (nothing copied).
    """
    source_meta, team_meta = MetaData(), MetaData()
    with source_engine.connect() as source, team_engine.begin() as team:
        source_meta.reflect(source)
        team_meta.reflect(team)
        if set(source_meta.tables) != set(team_meta.tables):
            raise StoreError("the SQLite and team stores have different tables; nothing copied")
        before = table_counts(source, source_meta)
        # What the team server made at its first start (Default experiment, ...) comes from
        # the SQLite store too
        for table in reversed(team_meta.sorted_tables):
            if table.name != "alembic_version":
                team.execute(table.delete())
        for table in team_meta.sorted_tables:
            if table.name == "alembic_version":
                continue
            booleans = [c.name for c in table.columns if isinstance(c.type, Boolean)]
            uris = URI_COLUMNS.get(table.name, ())
            rows = source.execute(select(source_meta.tables[table.name])).mappings()
            while chunk := rows.fetchmany(BATCH):
                batch = []
                for row in chunk:
                    row = dict(row)
                    for name in booleans:
                        row[name] = None if row[name] is None else bool(row[name])
                    for name in uris:
                        row[name] = local_uri(row[name])
                    batch.append(row)
                team.execute(table.insert(), batch)
        # Serial columns continue after the copied ids (experiment ids, ...)
        for table in team_meta.sorted_tables:
            for column in table.columns:
                sequence = team.execute(
                    text("SELECT pg_get_serial_sequence(:t, :c)"),
                    {"t": table.name, "c": column.name},
                ).scalar()
                if sequence:
                    team.execute(
                        text(
                            f'SELECT setval(:s, coalesce((SELECT max("{column.name}") '
                            f'FROM "{table.name}"), 0) + 1, false)'
                        ),
                        {"s": sequence},
                    )
        after = table_counts(team, team_meta)
    return before, after


def backup(dumps: Path, archive: Path) -> int:
    """Write the database dumps in ``dumps`` and the bucket's artifacts into ``archive``
    (.tar.gz: mlflow.dump, mlflow_auth.dump, artifacts/<key relative to the prefix>)."""
    s3 = s3_client()
    bucket, prefix = destination()
    partial = archive.with_name(f".{archive.name}.partial")
    try:
        # Each object is staged beside the archive, on the host's disk: /tmp is a tmpfs, where
        # a 2 GB model would take 2 GB of memory
        with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".objects-") as scratch:
            with tarfile.open(partial, "w:gz") as tar:
                for name in DUMPS:
                    if not (dumps / name).is_file() or not (dumps / name).stat().st_size:
                        raise StoreError(f"pg_dump wrote no {name}; see the lines above")
                    tar.add(dumps / name, arcname=name)
                # An empty folder marks the member even when the bucket holds nothing
                tar.add(scratch, arcname=ARTIFACTS, recursive=False)
                for key in bucket_objects(s3):
                    local = Path(scratch) / "object"
                    try:
                        s3.download_file(bucket, prefix + key, str(local))
                    except S3_ERRORS as error:
                        raise StoreError(
                            f"the object store did not return {key} ({s3_reason(error)}); "
                            "no backup was written"
                        ) from None
                    tar.add(local, arcname=f"{ARTIFACTS}/{key}")
                    local.unlink()
    except BaseException:
        # A failed backup leaves nothing behind to fill the disk
        partial.unlink(missing_ok=True)
        raise
    # Renamed only when complete: a backup cut short never looks like a good one
    partial.rename(archive)
    print(f"backup: {archive.name}")
    return 0


def check(archive: Path, staging: Path) -> int:
    """Unpack a team backup ``archive`` into ``staging`` and check its members.

    Raises:
        StoreError: when the archive is unreadable or not a team backup.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise StoreError(f"{archive.name} is not a readable backup archive: {error}") from None
    missing = [name for name in (*DUMPS, ARTIFACTS) if not (staging / name).exists()]
    if missing:
        raise StoreError(
            f"{archive.name} holds no {', '.join(missing)}: not a team backup "
            "(a backup of the SQLite default restores without TEAM=1)"
        )
    return 0


def upload_artifacts(staging: Path) -> int:
    """Upload the artifacts unpacked in ``staging``/artifacts into the bucket, over objects of
    the same key; objects the archive does not hold stay (prune-artifacts removes them once the
    restored databases no longer point at them), so the bucket serves the old store and the new
    one alike in between."""
    s3 = s3_client()
    bucket, prefix = destination()
    files = local_files(staging / ARTIFACTS)
    for relative in files:
        upload(s3, staging / ARTIFACTS / relative, bucket, prefix + relative)
    print(f"restore: {len(files)} artifact files in the bucket")
    return 0


def prune_artifacts(staging: Path) -> int:
    """Delete the bucket's objects that ``staging``/artifacts does not hold (the replaced
    store's own, after the databases were restored)."""
    s3 = s3_client()
    bucket, prefix = destination()
    extra = set(bucket_objects(s3)) - set(local_files(staging / ARTIFACTS))
    for key in extra:
        s3.delete_object(Bucket=bucket, Key=prefix + key)
    print(f"restore: {len(extra)} artifact files of the replaced store deleted")
    return 0


def main(argv: list[str]) -> int:
    """Run one command line (see the module's docstring); returns the exit status."""
    commands = {
        "migrate": (migrate, 1),
        "backup": (backup, 2),
        "check": (check, 2),
        "upload-artifacts": (upload_artifacts, 1),
        "prune-artifacts": (prune_artifacts, 1),
    }
    if not argv or argv[0] not in commands or len(argv) - 1 != commands[argv[0]][1]:
        print(
            "usage: team_store.py migrate SOURCE | backup DUMPS ARCHIVE | check ARCHIVE STAGING"
            " | upload-artifacts STAGING | prune-artifacts STAGING",
            file=sys.stderr,
        )
        return 2
    try:
        return commands[argv[0]][0](*(Path(arg) for arg in argv[1:]))
    except (StoreError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except S3_ERRORS as error:
        print(f"error: the object store failed: {s3_reason(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
