"""Evaluate a logged or registered model with MLflow's evaluation API on held-out rows, as a run
of its own; against a baseline model, exit 1 when the candidate's accuracy is below the
baseline's by more than EVALUATE_MAX_ACCURACY_DROP (env/project.env), so CI can gate a model.
In the runner: docker compose run --rm bash python evaluate.py --model models:/wine-classifier/2
--baseline models:/wine-classifier/1"""

from pathlib import Path

import click
import mlflow
import mlstack
from mlflow.models import MetricThreshold
from mlflow.models.evaluation.validation import ModelValidationFailedException

from mlstack_demo import data

# The metric the baseline gate compares, as MLflow's default classifier evaluator names it
GATE_METRIC = "accuracy_score"


def held_out_rows(model_uri, data_file):
    """The rows to evaluate on, labels in the ``target`` column: ``data_file``'s, else the
    held-out rows of the run that trained the model (its ``test_size`` and ``random_state``)."""
    if data_file is not None:
        features, target = data.load_data(data_file)
        return features.assign(**{data.TARGET: target})
    with mlstack.failure(f"cannot find the model {model_uri}"):
        run_id = mlflow.models.get_model_info(model_uri).run_id
        params = mlflow.get_run(run_id).data.params if run_id else {}
    if not {"test_size", "random_state"} <= set(params):
        raise mlstack.JobError(f"the run of {model_uri} does not record test_size and "
                               "random_state; give the rows to evaluate on with --data FILE")  # fmt: skip
    features, target = data.load_data()
    split = data.split(features, target, float(params["test_size"]), int(params["random_state"]))
    return split[1].assign(**{data.TARGET: split[3]})


def evaluate_on(model_uri, rows):
    """MLflow's default classifier evaluation of ``model_uri`` on ``rows``, in the active run."""
    with mlstack.failure(f"cannot evaluate {model_uri}"):
        return mlflow.models.evaluate(model_uri, rows, targets=data.TARGET,
                                      model_type="classifier", evaluators=["default"])  # fmt: skip


@mlstack.job
@click.option("--model", metavar="URI", required=True, help="The candidate model.")
@click.option("--data", "data_file", metavar="FILE", type=click.Path(path_type=Path),
              help="CSV or Parquet file with a 'target' column [default: the held-out rows of "
              "the model's training run].")  # fmt: skip
@click.option("--baseline", metavar="URI", help="Exit 1 when the model is worse than this one.")
@mlstack.experiment_option
@mlstack.run_name_option
def evaluate(model, data_file, baseline, experiment, run_name):
    """Evaluate an MLflow model on held-out data."""
    max_drop = mlstack.number_setting("EVALUATE_MAX_ACCURACY_DROP", 0.02)
    rows = held_out_rows(model, data_file)
    passed = True
    with mlstack.start_run(run_name=run_name, experiment=experiment) as run:
        mlflow.log_params({"model": model, "baseline": baseline, "rows": len(rows)})
        candidate = evaluate_on(model, rows)
        accuracy = candidate.metrics[GATE_METRIC]
        print(f"{model}: accuracy={accuracy:.3f} on {len(rows)} held-out rows")
        if baseline:
            with mlstack.start_run(run_name="baseline", nested=True):
                floor = evaluate_on(baseline, rows).metrics[GATE_METRIC] - max_drop
            print(f"baseline {baseline}: accuracy={floor + max_drop:.3f}")
            # MLflow's own check, with the floor as a fixed threshold: its relative checks
            # want an improvement over the baseline, not a tolerance below it
            gate = MetricThreshold(threshold=floor, greater_is_better=True)
            try:
                mlflow.validate_evaluation_results({GATE_METRIC: gate}, candidate)
            except ModelValidationFailedException:
                passed = False
            mlflow.set_tag("gate", "passed" if passed else "failed")
    print(f"evaluation run {run.info.run_id} logged to experiment '{experiment}'")
    print(mlstack.open_line(run))
    if not passed:
        raise mlstack.JobError(f"{model} is worse than the baseline: accuracy {accuracy:.3f} is "
                               f"below {floor:.3f} (the baseline's less EVALUATE_MAX_ACCURACY_DROP"
                               f"={max_drop:g}, env/project.env)")  # fmt: skip


if __name__ == "__main__":
    evaluate()
