"""What the stack adds to every MLflow client in the project's images (scripts users bring,
notebooks, the stack's jobs), loaded by MLflow itself as a plugin (the
``mlflow.request_header_provider`` entry point) when the client makes its first request:

- **Run links on the host's URL**: MLflow prints "View run ... at: <tracking URI>/#/..." after
  creating a run; in the containers that URI is ``http://mlflow:5000``, which no browser on the
  host opens. The line is printed with the tracking server's host URL instead, the one
  `make urls` prints (``MLSTACK_MLFLOW_URL``, from ``.mlstack/urls.env``). The stack's jobs
  print their own ``open:`` line and turn MLflow's off (``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT``).
- **A crash fails the run**: a script that dies with an uncaught exception leaves the runs it
  had open FAILED (KILLED for Ctrl-C), also one MLflow started implicitly (``mlflow.log_metric``
  without ``start_run``), which MLflow itself would close as FINISHED at exit. A script that
  ends normally, and Jupyter (which catches exceptions itself), are untouched.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys

from mlflow.tracking.request_header.abstract_request_header_provider import (
    RequestHeaderProvider,
)

from .settings import project_dir


class StackHooks(RequestHeaderProvider):
    """The plugin MLflow loads; it adds no header (``in_context`` is False): importing this
    module installs the hooks."""

    def in_context(self) -> bool:
        return False

    def request_headers(self) -> dict:
        return {}


def host_url() -> str | None:
    """The tracking server's URL as the host opens it: ``MLSTACK_MLFLOW_URL`` from the
    environment, else from the project's ``.mlstack/urls.env`` (written by `make up`); None
    when neither says."""
    if url := os.environ.get("MLSTACK_MLFLOW_URL"):
        return url.rstrip("/")
    try:
        lines = (project_dir() / ".mlstack" / "urls.env").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MLSTACK_MLFLOW_URL="):
            return line.split("=", 1)[1].strip().rstrip("/") or None
    return None


def on_host(text: str, tracking_url: str, host: str | None) -> str:
    """``text`` with the tracking server's in-network URL replaced by its host URL."""
    if not host or not tracking_url:
        return text
    return text.replace(tracking_url.rstrip("/") + "/", host + "/")


def fail_open_runs(kind: type) -> None:
    """End every run this process has open as FAILED (KILLED for a KeyboardInterrupt); never
    raises, so that the user sees their own exception."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return
    status = "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
    try:
        while mlflow.active_run() is not None:
            mlflow.end_run(status=status)
    except Exception:  # the tracking server may be what failed
        pass


def _install() -> None:
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    if getattr(TrackingServiceClient._log_url, "mlstack", False):
        return
    original = TrackingServiceClient._log_url

    def _log_url(self: TrackingServiceClient, run_id: str) -> None:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            original(self, run_id)
        if printed.getvalue():
            tracking_url = self.store.get_host_creds().host
            sys.stdout.write(on_host(printed.getvalue(), tracking_url, host_url()))

    _log_url.mlstack = True
    TrackingServiceClient._log_url = _log_url

    previous = sys.excepthook

    def excepthook(kind, value, traceback) -> None:
        fail_open_runs(kind)
        previous(kind, value, traceback)

    sys.excepthook = excepthook


_install()
