"""An S3 artifact repository for a tracking server that proxies artifacts (``--serve-artifacts``
with ``--artifacts-destination s3://...``, the team stack).

MLflow's own S3 repository offers multipart and presigned transfers. A server that has it
advertises them in ``/server-info``, and MLflow clients with default settings then ask it for
presigned URLs of the object store (``http://s3:8333/...``): a name only the stack's network
resolves, signed with the store's access key id. Clients outside the stack retry such a URL for
minutes and fail. This repository does all the S3 work of MLflow's but offers none of those
transfers, so the server advertises none, answers 501 to the presigned endpoints, and every
client streams artifacts through the tracking server, which alone holds the S3 keys.
"""

from __future__ import annotations

from mlflow.entities import FileInfo
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository


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
        """Upload one local file (a path) under ``artifact_path`` of the bucket's prefix."""
        self._s3.log_artifact(local_file, artifact_path)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        """Upload a local folder's files (recursively) under ``artifact_path``."""
        self._s3.log_artifacts(local_dir, artifact_path)

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        """The files and folders directly under ``path`` (sizes in bytes)."""
        return self._s3.list_artifacts(path)

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        self._s3._download_file(remote_file_path, local_path)

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        """Delete the objects under ``artifact_path`` (all of this URI's when None)."""
        self._s3.delete_artifacts(artifact_path)
