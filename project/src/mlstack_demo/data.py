"""The project's inputs, in one place: where data files live, how a table is read and written,
and how rows are split into training and held-out sets.

Folders (as cookiecutter-data-science has them; their contents are gitignored): ``data/raw``
holds the original files, never edited; ``data/interim`` intermediate tables; ``data/processed``
the tables models are trained on. Models and figures go to MLflow, not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlstack import JobError

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
RAW_DIR = DATA_DIR / "raw"
INTERIM_DIR = DATA_DIR / "interim"
PROCESSED_DIR = DATA_DIR / "processed"
# The label column of a data file; every other column is a feature
TARGET = "target"
# Readers and writers by file suffix
FORMATS = {
    ".csv": (pd.read_csv, lambda frame, path: frame.to_csv(path, index=False)),
    ".parquet": (pd.read_parquet, lambda frame, path: frame.to_parquet(path, index=False)),
}


class DataError(JobError, ValueError):
    """A data file that cannot be read as a table, or lacks the label column (a job says it in
    one ``error:`` line)."""


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file (by its suffix) into a data frame, rows in file order.

    Raises:
        DataError: when the file is missing, has another suffix, or cannot be parsed.
    """
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise DataError(f"{path}: not a .csv or .parquet file")
    reader, _ = FORMATS[path.suffix.lower()]
    try:
        return reader(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot be read as a table ({error})") from None


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` to a CSV or Parquet file (by its suffix), without the index.

    Raises:
        DataError: when the suffix is neither ``.csv`` nor ``.parquet``.
        OSError: when the file cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise DataError(f"{path}: the output must be a .csv or .parquet file")
    _, writer = FORMATS[path.suffix.lower()]
    writer(frame, path)


def load_data(path: str | Path | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """The data set as features and labels.

    Args:
        path: a CSV or Parquet file (usually under ``data/raw``) with a ``target`` column;
            ``None`` loads scikit-learn's wine data set (178 rows, 13 chemical measurements,
            3 cultivars labelled 0, 1, 2).

    Returns:
        ``(features, target)``: a data frame of shape (rows, features) and a series of
        ``rows`` labels, in file order.

    Raises:
        DataError: when the file cannot be read or has no ``target`` column.
    """
    if path is None:
        from sklearn.datasets import load_wine

        wine = load_wine(as_frame=True)
        return wine.data, wine.target
    frame = read_table(path)
    if TARGET not in frame.columns:
        raise DataError(f"{path}: no '{TARGET}' column (the labels)")
    return frame.drop(columns=[TARGET]), frame[TARGET]


def split(
    features: pd.DataFrame, target: pd.Series, test_size: float, random_state: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Split rows into training and held-out sets, stratified by label.

    The same ``test_size`` and ``random_state`` give the same rows: evaluate.py reads them
    from the training run's parameters to find that run's held-out rows again.

    Returns:
        ``(x_train, x_test, y_train, y_test)``; ``x_test`` holds ``test_size`` of the rows.
    """
    from sklearn.model_selection import train_test_split

    return train_test_split(
        features, target, test_size=test_size, random_state=random_state, stratify=target
    )


def as_dataset(features: pd.DataFrame, target: pd.Series) -> Any:
    """Features and labels as one MLflow data set named ``wine`` (for ``mlstack.log_dataset``),
    the labels in the ``target`` column."""
    import mlflow

    frame = features.assign(**{TARGET: target})
    return mlflow.data.from_pandas(frame, name="wine", targets=TARGET)


def held_out_rows(model_uri: str, path: str | Path | None = None) -> pd.DataFrame:
    """The rows to evaluate a model on, features and labels (the ``target`` column): those of
    the file at ``path``, else the held-out rows of the run that trained the model (found again
    from its ``test_size`` and ``random_state`` parameters, see :func:`split`).

    Raises:
        DataError: when the file cannot be read.
        JobError: when the model is not found, or its run lacks those parameters.
    """
    from mlstack import model_run_params

    if path is not None:
        features, target = load_data(path)
        return features.assign(**{TARGET: target})
    params = model_run_params(model_uri, ("test_size", "random_state"),
                              "give the rows to evaluate on with --data FILE")  # fmt: skip
    features, target = load_data()
    split_rows = split(features, target, float(params["test_size"]), int(params["random_state"]))
    return split_rows[1].assign(**{TARGET: split_rows[3]})
