"""The Dask plumbing: connecting to the cluster that `make up WORKERS=N` starts beside the stack
and running scikit-learn's parallel work (a search's fits, through joblib) on its workers, or
locally when there is no cluster.

Settings (read by :func:`mlstack.load_settings`):

- ``MLSTACK_DASK_SCHEDULER_ADDRESS`` (env/stack.env: ``tcp://dask-scheduler:8786``, the scheduler
  service as the containers reach it; empty: never use a cluster).
- ``MLSTACK_DASK_DASHBOARD_URL`` (.mlstack/urls.env, written by `make up` and `make urls` while
  the scheduler runs): the dashboard as the host opens it (``http://127.0.0.1:<port>``).

The rule for a scheduler that does not answer: a cluster is *expected* when `make up` or
`make urls` last saw its scheduler running (the dashboard URL is recorded), or when the
scheduler's host name resolves (its container exists, or the address names another machine).
An expected cluster that does not answer is an error (:class:`ClusterError`), never a silent
fallback to local fits; otherwise the work runs locally.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import warnings
from typing import Any, Callable, Iterator, Sequence, TypeVar
from urllib.parse import urlparse

from .settings import JobError, load_settings, setting

# Seconds to wait for the scheduler to answer, and for its first worker
CONNECT_TIMEOUT = 10.0
# How many different arguments :func:`per_worker` keeps the results of, per process
PER_WORKER_RESULTS = 4

Result = TypeVar("Result")


class ClusterError(JobError):
    """The Dask cluster is expected but does not answer, has no worker, runs other package
    versions than this client, or failed during the work; said in one line."""


def scheduler_address() -> str | None:
    """The scheduler's address (``MLSTACK_DASK_SCHEDULER_ADDRESS``), or ``None`` when unset or empty."""
    return setting("MLSTACK_DASK_SCHEDULER_ADDRESS") or None


def dashboard_url() -> str | None:
    """The dashboard's status page as the host opens it (``<MLSTACK_DASK_DASHBOARD_URL>/status``),
    or ``None`` when `make up`/`make urls` recorded no running scheduler."""
    base = setting("MLSTACK_DASK_DASHBOARD_URL")
    return f"{base.rstrip('/')}/status" if base else None


def resolves(address: str) -> bool:
    """Whether the host of ``address`` (``tcp://host:port``) has an IP address: the compose
    service name resolves only while its container exists."""
    try:
        socket.getaddrinfo(urlparse(address).hostname or "", None)
    except (socket.gaierror, UnicodeError):
        return False
    return True


def _not_answering(address: str, why: str) -> ClusterError:
    return ClusterError(
        f"the Dask scheduler at {address} {why}; start the cluster with 'make up WORKERS=N' "
        "(see 'make ps'), or remove it with 'make up' to fit locally"
    )


def mismatch(client: Any) -> str | None:
    """Dask's own version check of client, scheduler and workers (``get_versions(check=True)``),
    as one line: ``None`` when they agree, else ``"Mismatched versions found: toolz (client
    1.0.0, scheduler 1.2.0, workers 1.2.0)"``. Dask raises for some packages and only warns for
    others: both count."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            client.get_versions(check=True)
            message = next((str(w.message) for w in caught if "ismatched" in str(w.message)), "")
        except ValueError as error:
            message = str(error)
    if not message:
        return None
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in message.splitlines()
        if line.strip().startswith("|")
    ]
    if len(rows) < 2:
        return " ".join(message.split())
    header, *packages = rows
    differing = ", ".join(
        f"{row[0]} ({', '.join(f'{who.lower()} {v}' for who, v in zip(header[1:], row[1:]))})"
        for row in packages
    )
    return f"{message.strip().splitlines()[0].rstrip(':')}: {differing}"


def connect(timeout: float = CONNECT_TIMEOUT) -> Any | None:
    """A ``distributed.Client`` of the project's cluster, set as the default client, or ``None``
    when no cluster is expected (see the module's rule). The client's dashboard link is the
    host's URL when it is known.

    Args:
        timeout: seconds to wait for the scheduler to answer, and again for a worker.

    Raises:
        ClusterError: when the expected scheduler does not answer, no worker joins, or the
            cluster's packages differ from this client's (Dask's version mismatch).
    """
    load_settings()
    address = scheduler_address()
    recorded = dashboard_url()
    if not address:
        return None
    if not resolves(address):
        if recorded:
            raise _not_answering(
                address, "is gone (make up started it; its name no longer resolves)"
            )
        return None
    import dask
    from distributed import Client

    if recorded:
        dask.config.set({"distributed.dashboard.link": recorded})
    try:
        # Dask warns of a version mismatch on connecting: mismatch() below says it in one line
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as error:
        raise _not_answering(address, f"does not answer ({' '.join(str(error).split())})") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        client.close()
        raise ClusterError(
            f"the Dask scheduler at {address} has no worker after {timeout:g} s; "
            "start some with 'make up WORKERS=N'"
        ) from None
    if differing := mismatch(client):
        client.close()
        raise ClusterError(
            f"the Dask cluster at {address} runs other package versions than this client "
            f"({differing}); rebuild and restart it with 'make up WORKERS=N'"
        )
    return client


@contextlib.contextmanager
def connected(timeout: float = CONNECT_TIMEOUT) -> Iterator[Any | None]:
    """:func:`connect` for a block: yields the client (or ``None``: no cluster, fit locally)
    and closes it at the block's end.

    Raises:
        ClusterError: as :func:`connect`.
    """
    client = connect(timeout)
    try:
        yield client
    finally:
        if client is not None:
            client.close()


def describe(client: Any | None) -> str:
    """Where the work runs, for the one line a job prints: ``"on the Dask cluster at
    tcp://dask-scheduler:8786 (2 workers, dashboard http://127.0.0.1:32801/status)"``, or
    ``"locally (2 processes; no Dask cluster: 'make up WORKERS=N' starts one)"``."""
    if client is None:
        return (
            f"locally ({os.cpu_count()} processes; no Dask cluster: 'make up WORKERS=N' starts one)"
        )
    workers = len(client.scheduler_info(n_workers=-1)["workers"])
    board = dashboard_url()
    where = f"{workers} worker{'s' if workers != 1 else ''}" + (
        f", dashboard {board}" if board else ""
    )
    return f"on the Dask cluster at {client.scheduler.address} ({where})"


@contextlib.contextmanager
def parallel(client: Any | None) -> Iterator[None]:
    """Run the joblib-parallel work inside the block (scikit-learn's ``n_jobs=-1``) on the
    cluster's workers through joblib's ``dask`` backend, or in local processes when ``client``
    is ``None``. Dask re-runs the tasks of a worker that dies.

    Raises:
        ClusterError: when the cluster fails during the block (the scheduler goes away, or a
            task kills every worker it runs on).
    """
    import joblib

    if client is None:
        yield
        return
    from distributed import KilledWorker

    try:
        with joblib.parallel_config(backend="dask"):
            yield
    except (OSError, KilledWorker) as error:
        raise ClusterError(
            f"the Dask cluster at {client.scheduler.address} failed during the work: "
            f"{type(error).__name__}: {' '.join(str(error).split())}"
        ) from None


def map_tasks(
    function: Callable[..., Result], calls: Sequence[dict[str, Any]], client: Any | None = None
) -> list[Result]:
    """``function(**call)`` for every call: one Dask task each on the cluster of ``client`` (a
    ``distributed.Client``, see :func:`connect`), else locally by joblib on every core
    (``n_jobs=-1``).

    On a cluster the tasks go to the client directly rather than through joblib's ``dask``
    backend, which runs everything in the calling process when the cluster has one worker
    thread, and batches tasks by their duration. Keep the calls small (parameters, a file
    path): a task that carries the data depends on the one worker it was scattered to; load
    the data where the task runs (:func:`per_worker`).

    Returns:
        The results, in ``calls``' order.

    Raises:
        What ``function`` raises; ``distributed.KilledWorker`` or ``OSError`` when the cluster
        fails during the work (:func:`parallel` turns them into one :class:`ClusterError` line).
    """
    if client is not None:
        # pure=False: a repeated search computes again instead of reusing results
        futures = [client.submit(function, pure=False, **call) for call in calls]
        return client.gather(futures)
    from joblib import Parallel, delayed

    return Parallel(n_jobs=-1)(delayed(function)(**call) for call in calls)


def per_worker(function: Callable[..., Result]) -> Callable[..., Result]:
    """``function`` (of hashable arguments, a data loader say) computed once per process for
    each of its last :data:`PER_WORKER_RESULTS` arguments: a Dask worker or a joblib process
    runs many tasks of :func:`map_tasks` on the same data, and loads it once."""
    return functools.lru_cache(maxsize=PER_WORKER_RESULTS)(function)
