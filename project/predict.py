"""Batch predictions with a logged or registered model on a CSV or Parquet file: the output holds
the input's rows, in order, with a ``prediction`` column; the model's signature checks the
input's columns and types. In the runner: docker compose run --rm bash python predict.py
--model models:/wine-classifier/1 --input data/processed/new.csv --output data/processed/out.csv"""

from pathlib import Path

import click
import mlflow
import mlstack

from mlstack_demo import data
from mlstack_demo.model import add_predictions


def table_file(context, option, text):
    """A file name ending in .csv or .parquet (the formats the project reads and writes)."""
    if Path(text).suffix.lower() not in data.FORMATS:
        raise click.BadParameter(f"{text!r} is not a .csv or .parquet file")
    return Path(text)


@mlstack.job
@click.option("--model", metavar="URI", required=True,
              help="runs:/<run id>/model, models:/<name>/<version>, models:/<name>@<alias>")  # fmt: skip
@click.option("--input", "input_file", metavar="FILE", required=True, callback=table_file)
@click.option("--output", metavar="FILE", required=True, callback=table_file)
def predict(model, input_file, output):
    """Predict with an MLflow model on a data file."""
    rows = data.read_table(input_file)
    with mlstack.failure(f"cannot load the model {model}"):
        loaded = mlflow.pyfunc.load_model(model)
    with mlstack.failure(f"{input_file} does not fit the model {model}"):
        predicted = add_predictions(loaded, rows)
    with mlstack.failure(f"cannot write {output}"):
        data.write_table(predicted, output)
    print(f"predictions: {len(predicted)} rows of {input_file} written to {output}")


if __name__ == "__main__":
    predict()
