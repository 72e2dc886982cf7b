"""mlstack.serving: its request records (rotation, file mode, a bounded queue, a full disk) and
a timed-out prediction's worker."""

from __future__ import annotations

import logging
import os
import signal
import stat
import time

import pandas as pd
import pytest

from mlstack.serving import Record, Recorder


def a_record(number: int) -> Record:
    record = Record(f"request-{number}", "2026-12-06T00:00:00.000+00:00")
    record.inputs, record.outputs = pd.DataFrame({"x": [number] * 50}), [0] * 50
    return record


def test_records_rotate_by_size_and_keep_a_bounded_number_of_files(tmp_path):
    recorder = Recorder(tmp_path, 1.0, max_bytes=2_000, files=3)
    for number in range(200):
        recorder.put(a_record(number))
    recorder.close()
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) == 3, files
    assert all(path.stat().st_size < 2_000 + 1_000 for path in files)
    # The newest records are kept, in the current file and the rotated ones
    assert "request-199" in "".join(path.read_text() for path in files)
    assert 'request-0"' not in "".join(path.read_text() for path in files)
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files)


def test_a_full_queue_drops_records_and_counts_them(tmp_path, caplog):
    recorder = Recorder(None, 1.0, queued=2)
    recorder.queue.maxsize = 2
    with caplog.at_level(logging.WARNING, logger="mlstack.serving"):
        for number in range(5):
            recorder.put(a_record(number))
    assert recorder.queue.qsize() == 2 and recorder.dropped == 3
    assert caplog.text.count("request records dropped") == 1


def test_a_write_error_is_one_warning_until_writing_works_again(tmp_path, caplog):
    recorder = Recorder(tmp_path, 1.0)

    class FullFor20Writes:
        """The record file on a disk that is full for the first 20 writes."""

        def __init__(self, file):
            self.file, self.failures = file, 20

        def write(self, text):
            if self.failures:
                self.failures -= 1
                raise OSError(28, "No space left on device")
            return self.file.write(text)

        def __getattr__(self, name):
            return getattr(self.file, name)

    with caplog.at_level(logging.WARNING, logger="mlstack.serving"):
        recorder.file = FullFor20Writes(recorder.file)
        for number in range(21):
            recorder.put(a_record(number))
        recorder.close()
    assert caplog.text.count("No space left on device") == 1
    assert caplog.text.count("written again") == 1
    assert "request-20" in recorder.path.read_text()


def test_an_unwritable_folder_is_one_warning_and_no_records(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mlstack.serving"):
        recorder = Recorder(tmp_path / "missing", 1.0)
    assert recorder.file is None and not recorder.chosen()
    assert "requests are not recorded: cannot write" in caplog.text
    recorder.close()


@pytest.fixture
def slow_app(tmp_path, monkeypatch):
    """create_app on a pyfunc model that answers in 0.6 s, with a 0.1 s request timeout, no
    records, and os.kill / os._exit recorded instead of done."""
    import mlflow.pyfunc

    from mlstack import serving

    class Slow(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            time.sleep(0.6)
            return [0] * len(model_input)

    # Requirements given: MLflow's inference of them takes seconds
    mlflow.pyfunc.save_model(
        str(tmp_path / "model"), python_model=Slow(), pip_requirements=["mlflow"]
    )
    monkeypatch.setenv("MLSTACK_SERVE_TIMEOUT", "0.1")
    monkeypatch.setenv("MLSTACK_REQUEST_LOG", "")
    done = []
    monkeypatch.setattr(serving.os, "kill", lambda pid, sig: done.append(("kill", pid, sig)))
    monkeypatch.setattr(serving.os, "_exit", lambda status: done.append(("exit", status)))
    return serving, serving.create_app(str(tmp_path / "model")), done


def post_rows(client) -> int:
    body = {"dataframe_split": {"columns": ["x"], "data": [[1], [2]]}}
    return client.post("/invocations", json=body).status_code


@pytest.mark.parametrize("supervised", [True, False])
def test_a_timed_out_prediction_retires_its_worker_when_a_supervisor_replaces_it(
    slow_app, monkeypatch, caplog, supervised
):
    from starlette.testclient import TestClient

    serving, app, done = slow_app
    parent = object() if supervised else None
    monkeypatch.setattr(serving.multiprocessing, "parent_process", lambda: parent)
    with caplog.at_level(logging.WARNING, logger="mlstack.serving"):
        with TestClient(app) as client:
            assert post_rows(client) == 504
            assert post_rows(client) == 504
        # One SIGTERM to itself (uvicorn's graceful stop) when supervised, and one warning
        # either way; at the stop, the exit does not wait for the overdue threads
        kills = [(pid, sig) for kind, *rest in done if kind == "kill" for pid, sig in [rest]]
        assert kills == ([(os.getpid(), signal.SIGTERM)] if supervised else [])
        assert ("exit", 0) in done
    warnings = [r.getMessage() for r in caplog.records if "MLSTACK_SERVE_TIMEOUT" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert ("worker restarts" in warnings[0]) == supervised
    time.sleep(0.6)  # the overdue threads end before the next test
