"""The stack's repository's commit on every run (``mlflow.source.git.commit``, ``.branch``,
``.repoURL``), as MLflow records it for a script in a git clone. The containers see only the
project folder (``/project``), not the clone around it, so MLflow's own lookup finds no
repository; compose mounts the clone's ``.git`` read-only at :data:`GIT_DIR` and this MLflow
plugin (the ``mlflow.run_context_provider`` entry point) reads it there. A project folder that
is a git repository of its own keeps MLflow's own tags."""

from __future__ import annotations

import os

from mlflow.tracking.context.abstract_context import RunContextProvider

# Where compose mounts the clone's .git (read-only)
GIT_DIR = "/opt/mlstack/git"


def git_tags(git_dir: str = GIT_DIR) -> dict[str, str]:
    """The commit (40 hex digits), branch and remote URL (credentials stripped) of the
    repository whose git directory is ``git_dir``; ``{}`` when it is none. Reads the refs in
    Python (no git process, so no ownership check)."""
    from mlflow.utils.git_utils import _strip_credentials_from_url
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_BRANCH, MLFLOW_GIT_COMMIT, MLFLOW_GIT_REPO_URL

    if not os.path.isfile(os.path.join(git_dir, "HEAD")):
        return {}
    try:
        from git import Repo
        from git.refs.symbolic import SymbolicReference

        repo = Repo(git_dir)
        tags = {MLFLOW_GIT_COMMIT: SymbolicReference.dereference_recursive(repo, "HEAD")}
        if not repo.head.is_detached:
            tags[MLFLOW_GIT_BRANCH] = repo.head.reference.name
        url = next((remote.url for remote in repo.remotes), None)
        if url:
            tags[MLFLOW_GIT_REPO_URL] = _strip_credentials_from_url(url)
        return tags
    except Exception:  # noqa: BLE001 - no commit tag rather than a failed run
        return {}


class StackGitContext(RunContextProvider):
    """Adds :func:`git_tags` to a new run, unless MLflow's own lookup found a repository."""

    def in_context(self) -> bool:
        from mlflow.tracking.context.git_context import GitRunContext

        return not GitRunContext().in_context() and bool(git_tags())

    def tags(self) -> dict[str, str]:
        return git_tags()
