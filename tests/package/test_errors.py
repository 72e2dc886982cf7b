"""The one-line errors: which failure is which (mlstack.tracking) and the line users read
(mlstack.tracking, mlstack.serving); the host URL in run links (mlstack.hooks)."""

from __future__ import annotations

import errno

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

from mlstack import hooks, serving, tracking


def chained(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` raised while handling ``inner`` (its ``__context__``)."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer
    except BaseException as error:
        return error


def test_the_message_is_the_innermost_mlflow_errors_first_line():
    inner = MlflowException("Model is missing inputs ['alcohol']\nschema: ...")
    error = chained(RuntimeError("Failed to predict: a long story"), inner)
    assert tracking.error_message(error) == "Model is missing inputs ['alcohol']"
    assert tracking.error_message(ValueError("plain\nmore")) == "plain"
    assert tracking.error_message(KeyError()) == "KeyError"


def test_a_full_disk_is_found_behind_wrapping_errors():
    full = OSError(errno.ENOSPC, "No space left on device")
    assert tracking.disk_full(chained(MlflowException("could not log"), full)) is full
    assert tracking.disk_full(OSError(errno.EACCES, "denied")) is None


@pytest.mark.parametrize(
    "error, gone, unavailable",
    [
        (requests.ConnectionError("refused"), True, False),
        (MlflowException("API request failed: Max retries exceeded with url"), True, False),
        (MlflowException("too many 503 error responses"), False, True),
        (MlflowException("down", error_code=TEMPORARILY_UNAVAILABLE), False, True),
        (MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST), False, False),
    ],
)
def test_a_server_that_is_gone_is_told_from_a_store_that_is_down(error, gone, unavailable):
    assert tracking.server_gone(error) is gone
    assert tracking.store_unavailable(error) is unavailable


def test_a_scoring_error_is_the_line_that_says_what_is_wrong():
    wrapped = (
        "Failed to predict data '{...}'. Error: Failed to enforce schema of data '{...}' with "
        "schema '...'. Error: Model is missing inputs ['alcohol']"
    )
    assert serving.one_line(wrapped) == "Model is missing inputs ['alcohol']"
    assert serving.one_line("\n  first\nsecond") == "first"
    assert serving.one_line("   ") == "invalid request"
    assert len(serving.one_line("x" * 2000)) == 500


def test_run_links_point_at_the_host_url():
    text = "View run at: http://mlflow:5000/#/experiments/1/runs/abc"
    assert hooks.on_host(text, "http://mlflow:5000", "http://127.0.0.1:5123") == (
        "View run at: http://127.0.0.1:5123/#/experiments/1/runs/abc"
    )
    assert hooks.on_host(text, "http://mlflow:5000/", None) == text
