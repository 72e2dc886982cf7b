"""mlstack.release: model URIs, image names and a release's requirements."""

from __future__ import annotations

import pytest

from mlstack import release


@pytest.mark.parametrize(
    "uri, parts",
    [
        ("models:/wine/3", {"name": "wine", "version": "3"}),
        ("models:/wine@champion", {"name": "wine", "alias": "champion"}),
        ("runs:/" + "a" * 32 + "/model", {"run_id": "a" * 32, "path": "model"}),
        ("models:/wine", None),
        ("models:/wine/latest", None),
        ("runs:/abc/model", None),
        ("s3://bucket/model", None),
        ("", None),
    ],
)
def test_a_model_uri_is_parsed_or_refused(uri, parts):
    assert release.parse_model_uri(uri) == parts


@pytest.mark.parametrize(
    "name, tag, suffix",
    [
        ("wine-classifier", "3", "model-wine-classifier:3"),
        ("Wine Classifier_v2", "champion", "model-wine-classifier-v2:champion"),
        ("---", "1", "model-model:1"),
    ],
)
def test_an_image_name_is_a_valid_reference_part(name, tag, suffix):
    assert release.image_suffix(name, tag) == suffix


def test_the_serving_requirements_take_the_skinny_client_and_keep_the_rest():
    model = "# written by MLflow\nmlflow==3.1.0\nscikit-learn==1.6.1\n\nmlflow-skinny==3.1.0\n"
    model += "mlflow[extras]>=3\nmlflowx==1\n"
    assert release.serving_requirements(model) == (
        "mlflow-skinny==3.1.0\nscikit-learn==1.6.1\nmlflow-skinny==3.1.0\n"
        "mlflow-skinny>=3\nmlflowx==1\n"
    )
