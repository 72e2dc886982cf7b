"""The project's model: a forest grown to the number of trees asked for, predicting one label
per row."""

from __future__ import annotations

from mlstack_demo.data import load_data, split
from mlstack_demo.model import build_model, curve_points, grow


def test_the_model_grows_to_its_trees_and_predicts_a_label_per_row():
    x_train, x_test, y_train, y_test = split(*load_data(), test_size=0.25, random_state=0)
    model = build_model(max_depth=4, random_state=0)
    steps = list(grow(model, x_train, y_train, n_estimators=20, steps=4))
    assert steps == [5, 10, 15, 20]
    assert len(model.estimators_) == 20
    predicted = model.predict(x_test)
    assert predicted.shape == (len(x_test),)
    assert set(predicted) <= {0, 1, 2}
    assert model.score(x_test, y_test) > 0.8


def test_the_learning_curve_has_at_most_one_point_per_tree():
    assert curve_points(100, 10) == list(range(10, 101, 10))
    assert curve_points(3, 10) == [1, 2, 3]
