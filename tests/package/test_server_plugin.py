"""The tracking server's MLflow plugin (images/mlflow/plugin) from its source on the host: which
object-store failures are a full store, and what a client is told."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "images" / "mlflow" / "plugin" / "src"))

from mlstack_server import artifacts  # noqa: E402

UPLOAD_FAILED = (
    "Failed to upload /var/tmp/tmpok2f95yy/weights.bin to mlflow/artifacts/1/2d07/artifacts/"
    "weights.bin: An error occurred (InternalError) when calling the UploadPart operation: We "
    "encountered an internal error, please try again."
)


class ClientError(Exception):
    """Shaped as botocore's: the S3 error in ``response``."""

    def __init__(self, code: str) -> None:
        super().__init__(f"An error occurred ({code}) when calling the PutObject operation")
        self.response = {"Error": {"Code": code, "Message": "..."}}


@pytest.mark.parametrize(
    "error, code",
    [
        # boto3's S3UploadFailedError carries the code only in its message (SeaweedFS's answer
        # when no volume has room, as logged by a full team store)
        (RuntimeError(UPLOAD_FAILED), "InternalError"),
        (ClientError("XMinioStorageFull"), "XMinioStorageFull"),
        (ClientError("AccessDenied"), "AccessDenied"),
        (ConnectionError("Could not connect to the endpoint URL"), None),
    ],
)
def test_the_s3_error_code_is_read_from_the_response_or_the_message(error, code):
    assert artifacts.s3_error_code(error) == code


def test_a_cause_s_code_is_found_behind_a_wrapper():
    try:
        try:
            raise ClientError("InternalError")
        except ClientError as error:
            raise RuntimeError("upload failed") from error
    except RuntimeError as wrapper:
        assert artifacts.s3_error_code(wrapper) == "InternalError"


def test_a_full_store_is_a_507_with_one_line_naming_the_file_and_the_fix():
    with pytest.raises(artifacts.ArtifactStoreFull) as raised:
        with artifacts.refused_for_space("/var/tmp/tmpok2f95yy/weights.bin"):
            raise RuntimeError(UPLOAD_FAILED)
    error = raised.value
    # 507 is not among the statuses MLflow's client retries (429 and 5xx up to 504)
    assert error.get_http_status_code() == 507
    body = error.serialize_as_json()
    assert '"error_code": "RESOURCE_EXHAUSTED"' in body
    assert "\n" not in error.message
    assert error.message.startswith("the artifact store has no room for weights.bin")
    assert "make gc" in error.message and "make up" in error.message


@pytest.mark.parametrize(
    "error", [ClientError("AccessDenied"), ConnectionError("no route to host"), OSError(28, "x")]
)
def test_other_failures_pass_unchanged(error):
    with pytest.raises(type(error)) as raised:
        with artifacts.refused_for_space("/tmp/model.pkl"):
            raise error
    assert raised.value is error
