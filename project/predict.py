"""Batch predictions with a logged or registered model on a CSV or Parquet file: the output holds
the input's rows, in order, with a ``prediction`` column; the model's signature checks the
input's columns and types. With folders for --input and --output, each file of the input folder
that has no output yet (the morning job of schedules.toml). In the runner: docker compose run
--rm bash python predict.py --model models:/wine-classifier/1 --input data/processed/new.csv
--output data/processed/out.csv"""

from pathlib import Path

import click
import mlflow
import mlstack

from mlstack_demo import data
from mlstack_demo.model import add_predictions


def table_file(context, option, text):
    """A file name ending in .csv or .parquet (the formats the project reads and writes), or
    a folder of them."""
    path = Path(text)
    folder = path.is_dir() or (option.name == "output" and not path.suffix)
    if path.suffix.lower() not in data.FORMATS and not folder:
        raise click.BadParameter(f"{text!r} is not a .csv or .parquet file, nor a folder")
    return path


@mlstack.job
@click.option("--model", metavar="URI", required=True,
              help="runs:/<run id>/model, models:/<name>/<version>, models:/<name>@<alias>")  # fmt: skip
@click.option("--input", "input_file", metavar="FILE", required=True, callback=table_file)
@click.option("--output", metavar="FILE", required=True, callback=table_file)
def predict(model, input_file, output):
    """Predict with an MLflow model on a data file, or on each new file of a folder."""
    if input_file.is_dir():
        if output.suffix:
            raise mlstack.JobError(f"--input {input_file} is a folder, so --output must be one")
        output.mkdir(parents=True, exist_ok=True)
        pairs = [(each, output / each.name) for each in sorted(input_file.iterdir())
                 if each.suffix.lower() in data.FORMATS and not (output / each.name).exists()]  # fmt: skip
    else:
        pairs = [(input_file, output)]
    if not pairs:
        print(f"predictions: no new file in {input_file}")
        return
    with mlstack.failure(f"cannot load the model {model}"):
        loaded = mlflow.pyfunc.load_model(model)
    for source, target in pairs:
        rows = data.read_table(source)
        with mlstack.failure(f"{source} does not fit the model {model}"):
            predicted = add_predictions(loaded, rows)
        with mlstack.failure(f"cannot write {target}"):
            data.write_table(predicted, target)
        print(f"predictions: {len(predicted)} rows of {source} written to {target}")


if __name__ == "__main__":
    predict()
