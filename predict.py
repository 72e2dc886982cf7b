"""Batch predictions with a logged or registered model on a CSV or Parquet file.

Run it in the runner container, from the repo root:

    docker compose run --rm bash python predict.py --model models:/wine-classifier/1 \
        --input data/processed/new_wines.csv --output data/processed/predictions.csv

The model's signature checks the input's columns and their types; the output holds the input's
rows, in order, with a ``prediction`` column.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mlstack_demo import data, tracking
from mlstack_demo.model import add_predictions


def table_file(text: str) -> Path:
    """Parse a command-line file name that must end in .csv or .parquet.

    Raises:
        argparse.ArgumentTypeError: for another suffix.
    """
    path = Path(text)
    if path.suffix.lower() not in data.FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a .csv or .parquet file")
    return path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the model and the files from the command line (``None``: ``sys.argv``).

    Raises:
        SystemExit: with status 2 and argparse's one-line message, for a bad option.
    """
    parser = argparse.ArgumentParser(description="Predict with an MLflow model on a data file.")
    parser.add_argument(
        "--model",
        metavar="URI",
        required=True,
        help="runs:/<run id>/model, models:/<name>/<version>, models:/<name>@<alias> or models:/m-...",
    )
    parser.add_argument("--input", metavar="FILE", type=table_file, required=True)
    parser.add_argument("--output", metavar="FILE", type=table_file, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Returns:
        The exit status: 0, or 1 after one ``error:`` line when the input, the model or the
        tracking server fails; argparse exits with 2 on a bad option.
    """
    tracking.load_settings()
    args = parse_args(argv)

    def job(log) -> None:
        import mlflow

        rows = data.read_table(args.input)
        with tracking.failure(f"cannot load the model {args.model}"):
            model = mlflow.pyfunc.load_model(args.model)
        with tracking.failure(f"{args.input} does not fit the model {args.model}"):
            predicted = add_predictions(model, rows)
        with tracking.failure(f"cannot write {args.output}"):
            data.write_table(predicted, args.output)
        print(f"predictions: {len(predicted)} rows of {args.input} written to {args.output}")

    return tracking.run_job("predict", job)


if __name__ == "__main__":
    sys.exit(main())
