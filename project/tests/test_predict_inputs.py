"""predict.py's input checks: the model's signature refuses a missing or mistyped column with a
message naming it, and predictions keep the input's rows in order."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
import skops.io
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlstack.tracking import error_message

from mlstack_demo.data import load_data, split
from mlstack_demo.model import PREDICTION, add_predictions, build_model, grow


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small fitted model saved with its signature as train.py logs it, loaded back as
    predict.py loads it (``mlflow.pyfunc.load_model``), from a folder: no server needed."""
    x_train, _, y_train, _ = split(*load_data(), test_size=0.25, random_state=0)
    fitted = build_model(max_depth=3, random_state=0)
    list(grow(fitted, x_train, y_train, n_estimators=5, steps=1))
    path = tmp_path_factory.mktemp("model") / "model"
    mlflow.sklearn.save_model(
        fitted,
        path,
        signature=infer_signature(x_train, fitted.predict(x_train)),
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(fitted)),
        # Given, so MLflow does not infer them in a subprocess (seconds): not what is tested here
        pip_requirements=["scikit-learn"],
    )
    return mlflow.pyfunc.load_model(str(path))


@pytest.fixture
def rows() -> pd.DataFrame:
    """Ten rows of the data set in shuffled order."""
    return load_data()[0].sample(10, random_state=3)


def test_predictions_keep_the_inputs_rows_in_order(model, rows):
    predicted = add_predictions(model, rows)
    pd.testing.assert_frame_equal(predicted.drop(columns=[PREDICTION]), rows)
    assert list(predicted[PREDICTION]) == list(model.predict(rows))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda frame: frame.drop(columns=["alcohol"]), id="missing"),
        pytest.param(lambda frame: frame.assign(alcohol="strong"), id="mistyped"),
    ],
)
def test_a_missing_or_mistyped_column_is_named_in_one_line(model, rows, damage):
    with pytest.raises(MlflowException) as raised:
        add_predictions(model, damage(rows))
    message = error_message(raised.value)
    assert "alcohol" in message and "\n" not in message
    # The data itself is not part of the line
    assert len(message) < 200, message
