"""The release image's model server: MLflow's scoring protocol (``/ping``, ``/health``,
``/version``, ``POST /invocations`` with the JSON and CSV inputs of `mlflow models serve`) for the
model copied into the image, as an ASGI app that uvicorn runs with several workers.

What it adds to MLflow's own scoring server (whose parsing, schema enforcement and prediction it
calls): every error answers one JSON line ``{"error_code": ..., "message": ...}`` that names the
problem (a missing column, a wrong type, a malformed body) and never a stack trace or the request
echoed back; a request timeout; and a record of the requests for monitoring (see :class:`Recorder`).

Settings (environment variables, set in the image; ``docker run -e`` changes them):

- ``MLSTACK_MODEL_PATH``: the model's folder (default ``/opt/model``).
- ``MLSTACK_SERVE_TIMEOUT``: seconds one request may take before it answers 504 (default 60).
  A prediction thread cannot be stopped, so a worker whose prediction ran out of time finishes
  its other requests and exits, and uvicorn's supervisor starts a fresh one (``--workers`` 2 or
  more; a single worker logs a warning and keeps the thread).
- ``MLSTACK_SERVE_MAX_BODY_MB``: the largest request body in MiB (default 16); a larger one
  answers 413 before its rest is read, so one request cannot make a worker buffer gigabytes.
- ``MLSTACK_SERVE_MAX_ROWS``: the most rows one request may score (default 100000); more answer
  400 before the model runs.
- ``MLSTACK_REQUEST_LOG``: the folder the request records go to (default ``/var/log/model``,
  a mounted folder); empty: no records.
- ``MLSTACK_REQUEST_SAMPLE``: the share of requests recorded, 0 to 1 (default 1).
- ``MLSTACK_REQUEST_LOG_MAX_MB``, ``MLSTACK_REQUEST_LOG_FILES``: a worker's record file is
  rotated at this many MiB (default 64) and this many files are kept per worker (default 5):
  the records of a server that runs for months stay bounded.

The concurrency limit (``MLSTACK_SERVE_MAX_CONCURRENCY``, 503 above it) is uvicorn's own
``--limit-concurrency``, set by the image's command.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import datetime
import json
import logging
import multiprocessing
import os
import queue
import random
import signal
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

# At module level: FastAPI reads the routes' annotations (Request) from the module's names
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask

logger = logging.getLogger("mlstack.serving")

MIB = 1024 * 1024
# Records waiting for the writer thread, at most, per worker
QUEUED_RECORDS = 10_000


@dataclasses.dataclass
class Record:
    """One request chosen for the record: its id, when it was received (ISO 8601 UTC), and,
    once predicted, the inputs as the model received them (a DataFrame, rows × columns) and the
    predictions (array-like, one per row)."""

    request_id: str
    received: str
    inputs: Any = None
    outputs: Any = None


# The record of the request being answered, as the prediction thread sees it (asyncio.to_thread
# copies the context; the thread fills the record in), or None when this request is not recorded
_record: contextvars.ContextVar[Record | None] = contextvars.ContextVar(
    "mlstack_record", default=None
)


def one_line(message: str) -> str:
    """The line of an MLflow scoring error that says what is wrong. MLflow wraps a schema error
    as "Failed to predict data '<the whole input>'. Error: Failed to enforce schema of data
    '<the input again>' with schema '...'. Error: Model is missing inputs ['alcohol']": the text
    after the last "Error: " of such a message; else the message's first line. At most 500
    characters."""
    text = message.strip()
    if text.startswith("Failed to predict data") and "Error: " in text:
        text = text.rsplit("Error: ", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else "invalid request")[:500]


class Recorder:
    """Writes a sample of the served requests as JSON Lines, one file per worker process
    (``requests-<host>-<pid>.jsonl`` in ``folder``), so workers never interleave lines. A line:
    ``{"time": ISO 8601 UTC, "request_id": str, "inputs": {"columns": [...], "data": [[...]]},
    "outputs": [...]}``; monitor.py reads them.

    A request only queues its record; one writer thread per worker encodes and writes it, off
    the request's path. :meth:`close` writes what is queued (at the server's stop).

    Args:
        folder: where the files go; ``None`` records nothing.
        sample: the share of requests recorded, 0 to 1.
    """

    def __init__(
        self,
        folder: Path | None,
        sample: float,
        max_bytes: int = 64 * MIB,
        files: int = 5,
        queued: int = QUEUED_RECORDS,
    ) -> None:
        self.sample = sample
        self.max_bytes, self.files = max_bytes, max(files, 1)
        self.file = None
        self.path: Path | None = None
        # Bounded: records a slow or full disk cannot take are dropped (and counted), never
        # held in memory without end
        self.queue: queue.Queue[Record | None] = queue.Queue(maxsize=queued)
        self.dropped = 0
        self.failing = False
        self.writer: threading.Thread | None = None
        if folder is None or sample <= 0:
            return
        self.path = folder / f"requests-{socket.gethostname()}-{os.getpid()}.jsonl"
        try:
            self.file = self._open()
        except OSError as error:
            # Serving goes on without records: a prediction matters more than its record
            logger.warning(
                "requests are not recorded: cannot write %s (%s); mount a folder that UID %d "
                "can write, or set MLSTACK_REQUEST_LOG= to turn records off",
                self.path,
                error.strerror,
                os.getuid(),
            )
            return
        self.writer = threading.Thread(target=self._drain, name="mlstack-recorder", daemon=True)
        self.writer.start()

    def chosen(self) -> bool:
        """Whether the request being received is recorded (one draw per request)."""
        return self.file is not None and random.random() < self.sample

    def put(self, record: Record) -> None:
        """Queue one request's record for the writer thread (microseconds: never waits); when
        the queue is full, the record is dropped and counted (:attr:`dropped`)."""
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "%d request records dropped: the writer cannot keep up", self.dropped
                )

    def close(self) -> None:
        """Write every queued record, then close the file (blocks until written)."""
        if self.writer is not None:
            self.queue.put(None)
            self.writer.join()
            self.file.close()
            self.writer = None

    def _open(self) -> Any:
        # 0600: the records hold the raw inputs of every request
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(descriptor, "a", encoding="utf-8")

    def rotated(self, number: int) -> Path:
        """The name of the ``number``-th older file (1: the newest of them), still ``*.jsonl``
        so that monitor.py reads it."""
        return self.path.with_name(f"{self.path.stem}.{number}.jsonl")

    def _rotate(self) -> None:
        self.file.close()
        oldest = self.rotated(self.files - 1) if self.files > 1 else self.path
        oldest.unlink(missing_ok=True)
        for number in range(self.files - 2, 0, -1):
            if self.rotated(number).exists():
                self.rotated(number).rename(self.rotated(number + 1))
        if self.files > 1:
            self.path.rename(self.rotated(1))
        self.file = self._open()

    def _drain(self) -> None:
        while (record := self.queue.get()) is not None:
            try:
                self.file.write(self.line(record))
                # Whole lines reach the file when no request waits: monitor.py reads them live
                if self.queue.empty():
                    self.file.flush()
                if self.file.tell() >= self.max_bytes:
                    self.file.flush()
                    self._rotate()
                if self.failing:
                    self.failing = False
                    logger.warning("request records are written again to %s", self.path)
            except OSError as error:
                # A full disk: one line when it starts, not one per request
                if not self.failing:
                    self.failing = True
                    logger.warning(
                        "request records are not written (%s): %s", self.path, error.strerror
                    )
            except Exception:  # noqa: BLE001 - a record lost is logged, the writer goes on
                logger.exception("the record of request %s was not written", record.request_id)

    @staticmethod
    def line(record: Record) -> str:
        """One record as its JSON line. ``to_json(orient="values")``: 10 µs for one row, where
        ``orient="split"`` takes 0.3 ms; both write dates and NaN alike."""
        import numpy as np
        import pandas as pd

        inputs, outputs = record.inputs, record.outputs
        frame = inputs if isinstance(inputs, pd.DataFrame) else pd.DataFrame(inputs)
        predictions = outputs.to_numpy() if hasattr(outputs, "to_numpy") else np.asarray(outputs)
        columns = json.dumps([str(column) for column in frame.columns])
        return (
            f'{{"time": {json.dumps(record.received)}, '
            f'"request_id": {json.dumps(record.request_id)}, '
            f'"inputs": {{"columns": {columns}, "data": {frame.to_json(orient="values")}}}, '
            f'"outputs": {pd.Series(predictions.tolist()).to_json(orient="values")}}}\n'
        )


class RecordedModel:
    """A pyfunc model that keeps the inputs and predictions of a recorded request in its
    :class:`Record`; what MLflow's scoring code uses of the model (``metadata``, ``predict``) is
    the model's own."""

    def __init__(self, model: Any, max_rows: int | None = None) -> None:
        self.model = model
        self.metadata = model.metadata
        self.max_rows = max_rows

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """The model's predictions for ``data``, kept with ``data`` when the request was chosen.

        Raises:
            MlflowException: (400) more rows than ``max_rows``, before the model runs.
        """
        shape = getattr(data, "shape", None)
        rows = shape[0] if shape else len(data) if hasattr(data, "__len__") else 1
        if self.max_rows is not None and rows > self.max_rows:
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(
                f"{rows} rows in one request, over the limit of {self.max_rows} "
                "(MLSTACK_SERVE_MAX_ROWS); send smaller batches",
                error_code=INVALID_PARAMETER_VALUE,
            )
        outputs = self.model.predict(data, params=params)
        if (record := _record.get()) is not None:
            record.inputs, record.outputs = data, outputs
        return outputs


def retire_worker() -> bool:
    """Ask this uvicorn worker to stop once its other requests are answered (SIGTERM to itself,
    uvicorn's graceful shutdown), when it is one of several (``--workers`` 2 or more), whose
    supervisor then starts a fresh one. The thread of a timed-out prediction cannot be stopped:
    only a new process frees it.

    Returns:
        True when asked; False for a worker on its own (no supervisor would replace it).
    """
    if multiprocessing.parent_process() is None:
        return False
    os.kill(os.getpid(), signal.SIGTERM)
    return True


def create_app(model_path: str | None = None) -> Any:
    """The ASGI app serving the model at ``model_path`` (default: ``MLSTACK_MODEL_PATH``).

    Raises:
        mlflow.exceptions.MlflowException: when the folder holds no loadable model.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server
    from mlflow.version import VERSION

    path = model_path or os.environ.get("MLSTACK_MODEL_PATH", "/opt/model")
    folder = os.environ.get("MLSTACK_REQUEST_LOG", "/var/log/model")
    recorder = Recorder(
        Path(folder) if folder else None,
        float(os.environ.get("MLSTACK_REQUEST_SAMPLE", "1")),
        max_bytes=int(float(os.environ.get("MLSTACK_REQUEST_LOG_MAX_MB", "64")) * MIB),
        files=int(os.environ.get("MLSTACK_REQUEST_LOG_FILES", "5")),
    )
    max_rows = int(os.environ.get("MLSTACK_SERVE_MAX_ROWS", "100000"))
    model = RecordedModel(scoring_server.load_model_with_mlflow_config(path), max_rows)
    input_schema = model.metadata.get_input_schema()
    timeout = float(os.environ.get("MLSTACK_SERVE_TIMEOUT", "60"))
    max_body = int(float(os.environ.get("MLSTACK_SERVE_MAX_BODY_MB", "16")) * MIB)

    # Predictions of this worker still running after their request timed out
    overdue = 0

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # At the stop (SIGTERM): the queued records are written before the worker exits
        recorder.close()
        if overdue:
            # Python's exit would wait for the overdue prediction's thread
            logging.shutdown()
            os._exit(0)

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    def error(status: int, code: str, message: str, request_id: str) -> Response:
        return JSONResponse(
            {"error_code": code, "message": message},
            status_code=status,
            headers={"X-Request-ID": request_id},
        )

    async def queue_record(record: Record) -> None:
        recorder.put(record)

    @app.get("/ping")
    @app.get("/health")
    async def ping() -> Response:
        return Response(content="\n", media_type="application/json")

    @app.get("/version")
    async def version() -> Response:
        return Response(content=VERSION, media_type="application/json")

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        nonlocal overdue
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        record = None
        if recorder.chosen():
            now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
            record = Record(request_id, now)
            _record.set(record)
        too_large = error(
            413,
            "REQUEST_TOO_LARGE",
            f"the request body is over {max_body / MIB:g} MiB (MLSTACK_SERVE_MAX_BODY_MB); send "
            "smaller batches",
            request_id,
        )
        # Refused before the rest is read: by its declared length, else as it streams in
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body:
            return too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                return too_large
            chunks.append(chunk)
        body = b"".join(chunks)
        content_type = request.headers.get("content-type", "")
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(
                    scoring_server.invocations, body, content_type, model, input_schema
                ),
                timeout,
            )
        except TimeoutError:
            overdue += 1
            if overdue == 1:
                if retire_worker():
                    logger.warning(
                        "request %s: no answer within %g s (MLSTACK_SERVE_TIMEOUT); its "
                        "prediction runs on, so this worker restarts once its other requests "
                        "are answered",
                        request_id,
                        timeout,
                    )
                else:
                    logger.warning(
                        "request %s: no answer within %g s (MLSTACK_SERVE_TIMEOUT); its "
                        "prediction runs on and holds a thread (run 2 or more workers, "
                        "MLSTACK_SERVE_WORKERS, to have such a worker restarted)",
                        request_id,
                        timeout,
                    )
            return error(504, "DEADLINE_EXCEEDED", f"no answer within {timeout:g} s", request_id)
        except MlflowException as failure:
            return error(
                failure.get_http_status_code(),
                failure.error_code,
                one_line(failure.message),
                request_id,
            )
        except Exception as failure:  # noqa: BLE001 - a request never gets a traceback
            logger.exception("request %s failed", request_id)
            message = f"the model could not answer ({type(failure).__name__}); see the logs"
            return error(500, "INTERNAL_ERROR", message, request_id)
        if result.status != 200:
            # MLflow's own answers to an unsupported content type or charset (415): plain text
            return error(result.status, "BAD_REQUEST", one_line(result.response), request_id)
        recorded = record is not None and record.inputs is not None
        return Response(
            content=result.response,
            media_type=result.mimetype,
            headers={"X-Request-ID": request_id},
            # Queued once the answer is sent: the writer thread then takes the GIL while the
            # client reads, not while this worker sends. An async task runs on the event loop
            # itself, where a plain function would take a hop through Starlette's thread pool
            background=BackgroundTask(queue_record, record) if recorded else None,
        )

    return app


def smoke(url: str = "http://127.0.0.1:8080", wait: float = 60.0) -> int:
    """The release image's smoke test, run inside it (``python -m mlstack.serving smoke``):
    waits up to ``wait`` seconds for ``url``/ping, then posts the model's input example
    (``serving_input_example.json``, which MLflow saves with a model logged with one; without
    it, /ping alone) to /invocations.

    Returns:
        0 when the server answers and predicts; 1 after one ``error:`` line otherwise.
    """
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + wait
    while True:
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=2)
            break
        except OSError as failure:
            if time.monotonic() > deadline:
                print(f"error: {url}/ping did not answer within {wait:g} s: {failure}")
                return 1
            time.sleep(0.2)
    example = (
        Path(os.environ.get("MLSTACK_MODEL_PATH", "/opt/model")) / "serving_input_example.json"
    )
    if not example.is_file():
        print(f"smoke: {url} answers /ping (the model has no input example to predict)")
        return 0
    request = urllib.request.Request(
        f"{url}/invocations",
        data=example.read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=wait) as response:
            predictions = json.load(response)["predictions"]
    except urllib.error.HTTPError as failure:
        print(f"error: the input example got HTTP {failure.code}: {failure.read().decode()}")
        return 1
    print(f"smoke: {url} answers /ping and predicts the input example: {predictions}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(smoke() if sys.argv[1:] == ["smoke"] else 2)
