"""The model, in one place: a random forest classifier of the wine cultivars, grown a few trees
at a time so that training can record a learning curve, and the grid search over its
hyperparameters that sweep.py runs."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold

# The column predictions get in predict.py's output
PREDICTION = "prediction"


def build_model(
    max_depth: int | None = None, min_samples_leaf: int = 1, random_state: int = 42
) -> RandomForestClassifier:
    """An unfitted random forest; :func:`grow` sets its number of trees.

    Args:
        max_depth: the deepest a tree may grow; ``None`` for no limit.
        min_samples_leaf: the fewest training rows a leaf may hold.
        random_state: the seed of the bootstrap samples and feature picks.
    """
    # warm_start: each fit with more trees adds trees to the same forest
    return RandomForestClassifier(
        max_depth=max_depth,
        min_samples_leaf=min_samples_leaf,
        random_state=random_state,
        warm_start=True,
    )


def curve_points(n_estimators: int, steps: int) -> list[int]:
    """Numbers of trees at which the learning curve is measured: ``steps`` points, evenly
    spread, ending at ``n_estimators`` (fewer when there are fewer trees than steps)."""
    return sorted({max(1, round(n_estimators * (i + 1) / steps)) for i in range(steps)})


def grow(
    model: RandomForestClassifier,
    x_train: pd.DataFrame,
    y_train: pd.Series,
    n_estimators: int,
    steps: int,
):
    """Fit ``model`` up to ``n_estimators`` trees in ``steps`` steps.

    Yields:
        The number of trees after each step; the model is fitted with that many trees when
        the caller gets it (to score it for the learning curve).
    """
    for n_trees in curve_points(n_estimators, steps):
        model.set_params(n_estimators=n_trees).fit(x_train, y_train)
        yield n_trees


def add_predictions(model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the model's prediction for each row in a ``prediction`` column.

    Args:
        model: a model loaded with ``mlflow.pyfunc.load_model``; its signature checks the
            columns and their types (extra columns, such as the labels, are ignored).
        frame: the input rows, shape (rows, columns).

    Returns:
        A copy of ``frame``, same rows in the same order, plus ``prediction``.

    Raises:
        mlflow.exceptions.MlflowException: when a column the signature needs is missing or has
            a type it cannot take (the message names the column).
    """
    predictions = model.predict(frame)
    return frame.assign(**{PREDICTION: list(predictions)})


def build_search(
    grid: dict[str, list[Any]], folds: int = 5, random_state: int = 42
) -> GridSearchCV:
    """An unfitted grid search over :func:`build_model`'s forest: every combination of
    ``grid``'s values, each scored by ``folds``-fold stratified cross-validation (accuracy, the
    one that picks the best, and macro F1), then the best refitted on all rows.

    Args:
        grid: the forest's parameters to try, e.g. ``{"n_estimators": [50, 100],
            "max_depth": [3, 6]}``; ``None`` in ``max_depth`` means no limit.
        folds: the number of cross-validation folds (at least 2).
        random_state: the seed of the forests and of the folds' shuffle.

    Returns:
        A ``GridSearchCV`` whose fits joblib runs in parallel (``n_jobs=-1``: every local core,
        or every worker thread under joblib's ``dask`` backend).
    """
    return GridSearchCV(
        build_model(random_state=random_state),
        grid,
        scoring={"accuracy": "accuracy", "f1_macro": "f1_macro"},
        refit="accuracy",
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state),
        n_jobs=-1,
        return_train_score=True,
    )
