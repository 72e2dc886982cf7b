"""Host ports: each published service gets a loopback port once per project, remembered in
.env, so URLs, bookmarks and printed run links survive every restart; a remembered port that
another program holds now is replaced by a free one, with one line saying so."""

from __future__ import annotations

import socket
from typing import Callable, List, Mapping, NamedTuple, Optional

from stackctl.envfile import EnvFile


class Published(NamedTuple):
    """A service published on the host: its setting in .env, compose service, container port
    and the name users call it by."""

    key: str
    service: str
    container_port: int
    what: str


PUBLISHED = (
    Published("MLSTACK_MLFLOW_PORT", "mlflow", 5000, "MLflow"),
    Published("MLSTACK_JUPYTER_PORT", "jupyter", 8888, "Jupyter"),
    Published("MLSTACK_DASK_DASHBOARD_PORT", "dask-scheduler", 8787, "the Dask dashboard"),
    Published("MLSTACK_SCHEDULER_PORT", "scheduler", 4200, "the scheduler's UI"),
)


def bind(port: int) -> Optional[int]:
    """Bind 127.0.0.1:``port`` for an instant (0: a port the kernel picks).

    Returns:
        The bound port, or None when it is taken (or not a valid port).
    """
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            return probe.getsockname()[1]
    except (OSError, OverflowError, ValueError):
        return None


def free_port() -> int:
    """A loopback port that is free now (the kernel picks it)."""
    port = bind(0)
    assert port is not None, "the kernel found no free port"
    return port


def assign(
    env: EnvFile,
    environ: Mapping[str, str],
    check: bool,
    owner: Callable[[str, int], Optional[str]],
    is_free: Callable[[int], bool] = lambda port: bind(port) is not None,
    pick: Callable[[], int] = free_port,
) -> List[str]:
    """Give each published service without a remembered port one; with ``check``, also make
    sure each remembered one is free or already ours. A key set in ``environ`` (even empty,
    which leaves the choice to Docker) wins over .env for compose too, so it is left alone.

    Args:
        env: the project's .env, changed in place (the caller saves it).
        environ: the process environment.
        check: also check the remembered ports (at a start); False only fills in missing ones.
        owner: ``owner(service, container_port)``: the host address compose publishes that
            service's port on now (``127.0.0.1:PORT``), or None; asked only for a taken port.
        is_free, pick: the port probes (tests give their own).

    Returns:
        One line for each port that moved.
    """
    said = []
    for entry in PUBLISHED:
        if entry.key in environ:
            continue
        remembered = env.get(entry.key)
        if not remembered:
            env.set(entry.key, str(pick()))
            continue
        if not check:
            continue
        # Free is asked first: the usual case at a start, milliseconds where compose takes 0.1 s
        if remembered.isdigit() and is_free(int(remembered)):
            continue
        if owner(entry.service, entry.container_port) == f"127.0.0.1:{remembered}":
            continue
        new = pick()
        env.set(entry.key, str(new))
        said.append(
            f"ports: 127.0.0.1:{remembered} is taken by another program; {entry.what} now uses "
            f"127.0.0.1:{new} ({entry.key} in .env)"
        )
    return said
