"""The model, in one place: a random forest classifier of the wine cultivars, grown a few trees
at a time so that training can record a learning curve, and the cross-validated search
over its hyperparameters that sweep.py runs."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pandas as pd
from mlstack import cluster
from sklearn.ensemble import RandomForestClassifier

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


def candidates(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``grid``'s values (e.g. ``{"n_estimators": [50, 100], "max_depth":
    [3, None]}``, ``None``: no limit), in scikit-learn's ``ParameterGrid`` order."""
    from sklearn.model_selection import ParameterGrid

    return list(ParameterGrid(grid))


@cluster.per_worker
def _data(path: str | None) -> tuple[pd.DataFrame, pd.Series]:
    from .data import load_data

    return load_data(path)


def score_fold(
    params: dict[str, Any],
    fold: int,
    folds: int,
    random_state: int = 42,
    data_path: str | None = None,
) -> dict[str, float]:
    """Fit :func:`build_model`'s forest with ``params`` on the training rows of one fold of a
    stratified, shuffled ``folds``-fold split, and score it on that fold's held-out rows.

    It loads the data where it runs (``data.load_data(data_path)``: the wine data, or a file
    under the project folder, which workers see at the same path), so its arguments stay small
    and Dask can run it again on another worker when one dies.

    Args:
        params: the forest's parameters (``n_estimators``, ``max_depth``, ...).
        fold: which fold is held out, ``0 <= fold < folds``.

    Returns:
        ``test_accuracy``, ``test_f1_macro``, ``train_accuracy``, ``train_f1_macro`` (0..1) and
        ``fit_seconds`` (wall seconds of the fit).
    """
    from joblib import parallel_config
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold

    features, target = _data(data_path)
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    train, test = next(itertools.islice(splits.split(features, target), fold, None))
    model = build_model(random_state=random_state).set_params(**params)
    # One fit on one core, whoever runs it: under joblib's dask backend (which ignores n_jobs)
    # the forest's own joblib calls would send each tree to the cluster as a task of its own
    with parallel_config(backend="sequential"):
        started = time.perf_counter()
        model.fit(features.iloc[train], target.iloc[train])
        scores = {"fit_seconds": time.perf_counter() - started}
        for part, rows in (("test", test), ("train", train)):
            predicted = model.predict(features.iloc[rows])
            scores[f"{part}_accuracy"] = accuracy_score(target.iloc[rows], predicted)
            scores[f"{part}_f1_macro"] = f1_score(target.iloc[rows], predicted, average="macro")
    return scores


def cross_validate_grid(
    grid: dict[str, list[Any]],
    folds: int = 5,
    random_state: int = 42,
    data_path: str | None = None,
    client: Any | None = None,
) -> pd.DataFrame:
    """Cross-validate every candidate of ``grid``: one :func:`score_fold` task per candidate and
    fold, on the Dask cluster of ``client`` (a ``distributed.Client``) when given, else locally
    on every core (``mlstack.cluster.map_tasks``). The tasks carry only parameters; each loads
    the data where it runs.

    Returns:
        One row per candidate, in :func:`candidates` order: ``params`` (a dict), then
        ``cv_accuracy`` and ``cv_f1_macro`` (means over the folds, 0..1), ``cv_accuracy_std``
        and ``cv_f1_macro_std`` (their spread), ``train_accuracy``, ``train_f1_macro``,
        ``fit_seconds`` (mean seconds per fit) and ``rank`` (1: the best ``cv_accuracy``; the
        first of equals).

    Raises:
        distributed.KilledWorker, OSError: when the cluster fails during the search (a task
            that killed the workers it ran on, the scheduler gone); ``mlstack.cluster.parallel`` turns
            them into one ``ClusterError`` line.
    """
    params = candidates(grid)
    tasks = [(index, fold) for index in range(len(params)) for fold in range(folds)]
    calls = [
        {"params": params[index], "fold": fold, "folds": folds, "random_state": random_state,
         "data_path": data_path}
        for index, fold in tasks
    ]  # fmt: skip
    scores = cluster.map_tasks(score_fold, calls, client)
    by_candidate = pd.DataFrame(scores).groupby([index for index, _ in tasks])
    means, spreads = by_candidate.mean(), by_candidate.std(ddof=0)
    results = pd.DataFrame(
        {
            "params": params,
            "cv_accuracy": means["test_accuracy"],
            "cv_accuracy_std": spreads["test_accuracy"],
            "cv_f1_macro": means["test_f1_macro"],
            "cv_f1_macro_std": spreads["test_f1_macro"],
            "train_accuracy": means["train_accuracy"],
            "train_f1_macro": means["train_f1_macro"],
            "fit_seconds": means["fit_seconds"],
        }
    )
    results["rank"] = results["cv_accuracy"].rank(ascending=False, method="first").astype(int)
    return results


def plot_scores(results: pd.DataFrame, folds: int) -> Any:
    """Cross-validated accuracy against the number of trees, one line per maximum depth (the
    other parameters at the best candidate's), with the spread over the folds.

    Args:
        results: :func:`cross_validate_grid`'s table.
        folds: the number of folds, for the axis label.

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    table = pd.DataFrame(list(results["params"]), dtype=object).join(results.drop(columns="params"))
    best = results.loc[results["rank"] == 1, "params"].iloc[0]
    others = table["min_samples_leaf"] == best["min_samples_leaf"]
    figure, axes = plt.subplots(figsize=(6, 4))
    for max_depth, rows in table[others].groupby("max_depth", dropna=False):
        rows = rows.sort_values("n_estimators")
        axes.errorbar(
            rows["n_estimators"],
            rows["cv_accuracy"],
            yerr=rows["cv_accuracy_std"],
            marker="o",
            capsize=3,
            label=f"max_depth={max_depth}",
        )
    axes.set_xlabel("n_estimators (trees)")
    axes.set_ylabel(f"accuracy ({folds}-fold CV)")
    axes.set_title("Wine: cross-validated accuracy by number of trees")
    axes.legend()
    return figure
