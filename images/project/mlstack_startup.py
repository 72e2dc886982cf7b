"""The stack's start-up hook in the project's images (jupyter, the runner, Dask workers, serve),
run at every Python start by mlstack_startup.pth in site-packages. It only registers an import
finder; a process that never imports Dask pays nothing more. When ``distributed`` is imported,
its ``Client`` learns the stack's cluster, so Dask code runs as Dask's docs write it:

- ``Client(n_workers=..., ...)`` and ``LocalCluster(...)``: the local cluster asked for, always
  (Dask itself refuses cluster options once a scheduler address is configured).
- ``Client()``: the stack's cluster when `make up WORKERS=N` runs one (its scheduler's name,
  ``MLSTACK_DASK_SCHEDULER_ADDRESS`` from env/stack.env, resolves on the stack's network), else
  Dask's own default, a local cluster in this container (inside its memory limit).
- ``client.cluster`` of the stack's cluster: its dashboard link as the host opens it;
  ``scale()`` and ``adapt()`` fail in one line naming ``make up WORKERS=N`` (make sizes it).

A ``scheduler-address`` set in Dask's own configuration, or ``DASK_SCHEDULER_ADDRESS``, wins.
"""

import importlib.abc
import importlib.util
import os
import socket
import sys

SCALE_MESSAGE = (
    "the stack's Dask cluster is sized by make, not from Python: run 'make up WORKERS=N' on the "
    "host (or make a local cluster of your own: Client(n_workers=N))"
)


def stack_scheduler():
    """The stack's scheduler address when its container runs (the name resolves), else None."""
    address = os.environ.get("MLSTACK_DASK_SCHEDULER_ADDRESS", "")
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    if not host:
        return None
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return None
    return address


def dashboard_link():
    """The dashboard's status page as the host opens it (``.mlstack/urls.env``), or None."""
    url = os.environ.get("MLSTACK_DASK_DASHBOARD_URL")
    if not url:
        try:
            with open("/project/.mlstack/urls.env") as urls:
                for line in urls:
                    if line.startswith("MLSTACK_DASK_DASHBOARD_URL="):
                        url = line.split("=", 1)[1].strip()
        except OSError:
            return None
    return f"{url.rstrip('/')}/status" if url else None


class StackCluster:
    """``client.cluster`` for a client of the stack's cluster: what it is, not a handle to
    resize it (Docker Compose runs its workers; make sizes them)."""

    def __init__(self, address):
        from distributed.core import Status

        self.status = Status.running
        self.scheduler_address = address
        self.dashboard_link = dashboard_link()

    def scale(self, *args, **kwargs):
        """Refused: see :data:`SCALE_MESSAGE`."""
        raise RuntimeError(SCALE_MESSAGE)

    adapt = scale

    async def close(self, *args, **kwargs):
        """Nothing to close: the stack's cluster outlives its clients."""

    def __repr__(self):
        return f"StackCluster({self.scheduler_address!r}, sized by 'make up WORKERS=N')"

    def _repr_html_(self):
        return f"<p>{self!r}</p>"


def adapt_client(distributed):
    """Wrap ``distributed.Client.__init__`` as the module's docstring says."""
    import inspect

    import dask

    client_class = distributed.Client
    original = client_class.__init__
    named = set(inspect.signature(original).parameters)

    def __init__(self, address=None, *args, **kwargs):
        cluster_options = set(kwargs) - named
        if address is None and not args and cluster_options:
            # Dask's own rule refuses these once a scheduler address is configured
            with dask.config.set({"scheduler-address": None}):
                original(self, None, **kwargs)
            return
        stack = None
        if address is None and not args and not dask.config.get("scheduler-address", None):
            stack = stack_scheduler()
            address = stack
        original(self, address, *args, **kwargs)
        if stack is not None and self.cluster is None:
            self.cluster = StackCluster(stack)

    __init__.__doc__ = original.__doc__
    client_class.__init__ = __init__


class _Finder(importlib.abc.MetaPathFinder):
    """Calls :func:`adapt_client` once ``distributed`` is imported."""

    def __init__(self):
        self.busy = False

    def find_spec(self, name, path=None, target=None):
        if name != "distributed" or self.busy:
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader)
        return spec


class _Loader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        try:
            adapt_client(module)
        except Exception as error:  # never stop Dask from importing
            print(f"warning: mlstack's Dask hook is off: {error}", file=sys.stderr)


if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
