"""Evaluate a logged or registered model with MLflow's evaluation API on held-out rows, as a run
of its own; against a baseline model, exit 1 when the candidate's accuracy is below the
baseline's by more than EVALUATE_MAX_ACCURACY_DROP (project.env), so CI can gate a model.
With --promote champion, the baseline is the version behind the alias champion and the alias
moves to the candidate when it passes (the nightly job of schedules.toml).
In the runner: docker compose run --rm bash python evaluate.py --model models:/wine-classifier/2
--baseline models:/wine-classifier/1"""

from pathlib import Path

import click
import mlflow
import mlstack

from mlstack_demo import data


@mlstack.job
@click.option("--model", metavar="URI", required=True, help="The candidate model.")
@click.option("--data", "data_file", metavar="FILE", type=click.Path(path_type=Path),
              help="CSV or Parquet file with a 'target' column [default: the held-out rows of "
              "the model's training run].")  # fmt: skip
@click.option("--baseline", metavar="URI", help="Exit 1 when the model is worse than this one.")
@click.option("--promote", metavar="ALIAS",
              help="Compare with the version behind ALIAS (none yet: no comparison) and move "
              "ALIAS to the model, a registered version, when it passes.")  # fmt: skip
@mlstack.experiment_option
@mlstack.run_name_option
def evaluate(model, data_file, baseline, promote, experiment, run_name):
    """Evaluate an MLflow model on held-out data."""
    max_drop = mlstack.number_setting("EVALUATE_MAX_ACCURACY_DROP")
    if promote:
        candidate_version = mlstack.registered_version(model)
        model = candidate_version.uri
        champion = mlstack.alias_version(candidate_version.name, promote)
        baseline = baseline or (champion.uri if champion else None)
    rows = data.held_out_rows(model, data_file)
    with mlstack.start_run(run_name=run_name, experiment=experiment) as run:
        mlflow.log_params({"model": model, "baseline": baseline, "rows": len(rows)})
        candidate = mlstack.evaluate_classifier(model, rows, data.TARGET)
        accuracy = candidate.metrics[mlstack.GATE_METRIC]
        print(f"{model}: accuracy={accuracy:.3f} on {len(rows)} held-out rows")
        if baseline:
            gate = mlstack.compare_with_baseline(candidate, baseline, rows, data.TARGET, max_drop)
            print(f"baseline {baseline}: accuracy={gate.baseline:.3f}")
    print(f"evaluation run {run.info.run_id} logged to experiment '{experiment}'")
    print(mlstack.open_line(run))
    if baseline and not gate.passed:
        kept = f"; {promote} stays on {baseline}" if promote else ""
        raise mlstack.JobError(f"{model} is worse than the baseline: accuracy {accuracy:.3f} is "
                               f"below {gate.floor:.3f} (the baseline's less EVALUATE_MAX_ACCURACY_DROP"
                               f"={max_drop:g}, project.env){kept}")  # fmt: skip
    if promote:
        mlstack.set_alias(candidate_version, promote)
        print(
            f"promoted: {promote} is now {model}" + (f" (was {champion.uri})" if champion else "")
        )


if __name__ == "__main__":
    evaluate()
