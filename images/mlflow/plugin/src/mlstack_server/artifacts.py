"""An S3 artifact repository for a tracking server that proxies artifacts (``--serve-artifacts``
with ``--artifacts-destination s3://...``, the team stack).

MLflow's own S3 repository offers multipart and presigned transfers. A server that has it
advertises them in ``/server-info``, and MLflow clients with default settings then ask it for
presigned URLs of the object store (``http://s3:8333/...``): a name only the stack's network
resolves, signed with the store's access key id. Clients outside the stack retry such a URL for
minutes and fail. This repository does all the S3 work of MLflow's but offers none of those
transfers, so the server advertises none, answers 501 to the presigned endpoints, and every
client streams artifacts through the tracking server, which alone holds the S3 keys.

An upload the object store refuses for lack of space is answered with HTTP 507 (Insufficient
Storage) and one line saying so and what frees space, not MLflow's 500: clients retry a 500 for
minutes (five times, with backoff) and then print "too many 500 error responses".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePath

from mlflow.entities import FileInfo
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_EXHAUSTED
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

_logger = logging.getLogger(__name__)

# S3 error codes with which object stores refuse a write for lack of space. SeaweedFS has none of
# its own: it answers InternalError ("We encountered an internal error") when no volume can take
# the data ("No writable volumes and no free volumes left" in its log); MinIO says
# XMinioStorageFull.
FULL_STORE_CODES = frozenset({"InternalError", "XMinioStorageFull", "InsufficientStorage"})


class ArtifactStoreFull(MlflowException):
    """The object store refused an upload for lack of space.

    Answered with HTTP 507, which MLflow clients do not retry (they retry 429 and 5xx up to 504),
    and the error code RESOURCE_EXHAUSTED in MLflow's JSON error body.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=RESOURCE_EXHAUSTED)

    def get_http_status_code(self) -> int:
        """507 (Insufficient Storage), in place of the 429 MLflow maps RESOURCE_EXHAUSTED to."""
        return 507


def s3_error_code(error: BaseException) -> str | None:
    """The S3 error code behind a failed transfer, or None when it has none.

    Args:
        error: what boto3 raised: a botocore ``ClientError`` (its ``response["Error"]["Code"]``)
            or boto3's ``S3UploadFailedError``, which carries the ClientError only in its
            message ("... An error occurred (InternalError) when calling the UploadPart
            operation: ..."). Causes and contexts are followed.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        response = getattr(error, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):
            return str(response["Error"]["Code"])
        found = re.search(r"An error occurred \((\w+)\) when calling", str(error))
        if found:
            return found[1]
        error = error.__cause__ or error.__context__
    return None


def full_store_message(name: str, code: str) -> str:
    """The one line a client gets when the store refused ``name`` (a file's name) with ``code``
    (an S3 error code of FULL_STORE_CODES): the cause, where to see the free space, and what
    frees it without losing runs that are kept."""
    return (
        f"the artifact store has no room for {name} (the object store answered {code}, as "
        "SeaweedFS does when no volume has room left); on the stack's host, 'make up' prints its "
        "free space, and deleting runs you do not need then 'make gc' frees some, or give the "
        "object store's volume more disk"
    )


class ProxiedS3ArtifactRepository(ArtifactRepository):
    """MLflow's S3ArtifactRepository without its multipart and presigned mixins.

    Each call is delegated to an ``S3ArtifactRepository`` for the same URI; credentials and the
    endpoint come from the server's environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    MLFLOW_S3_ENDPOINT_URL), as for MLflow's own.

    Args:
        artifact_uri: ``s3://<bucket>/<prefix>``, the server's artifacts destination.
        tracking_uri, registry_uri: passed on to MLflow's repository.
    """

    def __init__(
        self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
    ) -> None:
        super().__init__(artifact_uri, tracking_uri, registry_uri)
        self._s3 = S3ArtifactRepository(artifact_uri, tracking_uri, registry_uri)

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        """Upload one local file (a path) under ``artifact_path`` of the bucket's prefix.

        Raises:
            ArtifactStoreFull: the object store refused it for lack of space.
        """
        with refused_for_space(local_file):
            self._s3.log_artifact(local_file, artifact_path)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        """Upload a local folder's files (recursively) under ``artifact_path``.

        Raises:
            ArtifactStoreFull: the object store refused one of them for lack of space.
        """
        with refused_for_space(local_dir):
            self._s3.log_artifacts(local_dir, artifact_path)

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        """The files and folders directly under ``path`` (sizes in bytes)."""
        return self._s3.list_artifacts(path)

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        self._s3._download_file(remote_file_path, local_path)

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        """Delete the objects under ``artifact_path`` (all of this URI's when None)."""
        self._s3.delete_artifacts(artifact_path)


@contextmanager
def refused_for_space(local_path: str) -> Iterator[None]:
    """Turns an upload failure whose S3 error code is one of FULL_STORE_CODES into
    ArtifactStoreFull naming ``local_path``'s file (and logs its message once, as a warning);
    any other failure passes unchanged."""
    try:
        yield
    except Exception as error:
        code = s3_error_code(error)
        if code in FULL_STORE_CODES:
            message = full_store_message(PurePath(local_path).name, code)
            # The access log shows only the 507: this line, in `make logs`, says why
            _logger.warning(message)
            raise ArtifactStoreFull(message) from error
        raise
