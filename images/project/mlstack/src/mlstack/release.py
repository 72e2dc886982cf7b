"""The first step of `make release`, run in the runner (``python -m mlstack.release MODEL DIR``):
fetches a logged or registered model from the tracking server into DIR, the build context of its
release image (images/release/Dockerfile):

- ``DIR/model/``: the model's files, as MLflow logged them;
- ``DIR/requirements.txt``: what the model needs to predict, from the model's own requirements
  (MLflow's client-only package ``mlflow-skinny`` in place of the full ``mlflow``); the build
  installs them at the versions of the stack's lock, so the model predicts with the versions it
  was trained with;
- ``DIR/release.env``: ``KEY=value`` lines make release (scripts/stackctl) turns into the image's name and
  OCI labels (MODEL_NAME, MODEL_VERSION, MODEL_URI, RUN_ID, GIT_COMMIT, IMAGE_SUFFIX).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import click

from .jobs import job
from .settings import JobError
from .tracking import REFERENCE_FILE, failure

# The forms of model URI a release takes; group names are what each form gives
MODEL_URI_FORMS = (
    re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$"),
    re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[\w-]+)$"),
    re.compile(r"^runs:/(?P<run_id>[0-9a-f]{32})/(?P<path>.+)$"),
)


def parse_model_uri(model_uri: str) -> dict[str, str] | None:
    """The parts of a model URI in one of the :data:`MODEL_URI_FORMS`: ``name`` and ``version``
    or ``alias``, or ``run_id`` and ``path``; ``None`` for any other text."""
    return next((m.groupdict() for f in MODEL_URI_FORMS if (m := f.match(model_uri))), None)


def image_suffix(name: str, tag: str) -> str:
    """``model-<name>:<tag>``, the name made a valid image reference part (lower case, runs of
    other characters as one ``-``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"
    return f"model-{slug}:{tag}"


def serving_requirements(model_requirements: str) -> str:
    """The model's requirements.txt (MLflow writes one beside every model) for a serving image:
    ``mlflow`` becomes ``mlflow-skinny`` (the client and scoring server, without the tracking
    server, its UI and their dependencies), the rest stays."""
    lines = []
    for line in model_requirements.splitlines():
        stripped = line.strip()
        if re.match(r"^mlflow(\[[^\]]*\])?\s*(==|>=|~=|$)", stripped):
            stripped = "mlflow-skinny" + re.sub(r"^mlflow(\[[^\]]*\])?", "", stripped)
        if stripped and not stripped.startswith("#"):
            lines.append(stripped)
    return "\n".join(lines) + "\n"


@job
@click.argument("model_uri", metavar="MODEL")
@click.argument("destination", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
def release(model_uri: str, destination: Path) -> None:
    """Fetch MODEL (models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH) from the
    tracking server into DIR, the build context of its release image."""
    import mlflow

    form = parse_model_uri(model_uri)
    if form is None:
        raise JobError(
            f"MODEL={model_uri} is not a model URI the release takes: models:/NAME/VERSION, "
            "models:/NAME@ALIAS or runs:/RUN_ID/PATH"
        )
    client = mlflow.MlflowClient()
    with failure(f"cannot find {model_uri} on the tracking server"):
        if "run_id" in form:
            run_id, name, version = form["run_id"], "", ""
            client.get_run(run_id)
            suffix = image_suffix("run", run_id[:12])
        else:
            if "alias" in form:
                found = client.get_model_version_by_alias(form["name"], form["alias"])
            else:
                found = client.get_model_version(form["name"], form["version"])
            run_id, name, version = found.run_id, found.name, str(found.version)
            model_uri = f"models:/{name}/{version}"
            suffix = image_suffix(name, version)
        commit = client.get_run(run_id).data.tags.get("mlflow.source.git.commit", "unknown")
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / "model"
    shutil.rmtree(target, ignore_errors=True)
    with (
        failure(f"cannot download {model_uri}"),
        tempfile.TemporaryDirectory(dir=destination) as scratch,
    ):
        shutil.move(mlflow.artifacts.download_artifacts(model_uri, dst_path=scratch), target)
    if not (target / "MLmodel").is_file():
        raise JobError(f"{model_uri} is not a model: its files hold no MLmodel")
    # Training data has no place in a production image; monitoring reads it from the server
    (target / REFERENCE_FILE).unlink(missing_ok=True)
    requirements = target / "requirements.txt"
    if not requirements.is_file():
        raise JobError(f"{model_uri} was logged without a requirements.txt; log it again")
    (destination / "requirements.txt").write_text(serving_requirements(requirements.read_text()))
    settings = {
        "MODEL_NAME": name,
        "MODEL_VERSION": version,
        "MODEL_URI": model_uri,
        "RUN_ID": run_id,
        "GIT_COMMIT": commit,
        "IMAGE_SUFFIX": suffix,
    }
    (destination / "release.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    print(f"fetched {model_uri} (run {run_id})")


if __name__ == "__main__":
    release()
