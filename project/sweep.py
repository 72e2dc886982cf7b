"""Grid-search the random forest by cross-validation (train.py's model and data) and log the
search to MLflow: a parent run with the best model, one child run per candidate. The fits run on
the Dask cluster of `make up WORKERS=N` when one is up, locally otherwise. In the runner:
docker compose run --rm bash python sweep.py --n-estimators 50,100,200 --max-depth 3,6"""

import click
import mlflow
import mlstack
from mlstack import cluster

from mlstack_demo import data
from mlstack_demo.model import build_model, cross_validate_grid, plot_scores

TREES = click.IntRange(min=1)


@mlstack.job
@click.option("--n-estimators", type=mlstack.CommaList(TREES), default="25,50,100,200")
@click.option("--max-depth", type=mlstack.CommaList(TREES, "none"), default="3,6",
              help="'none': unlimited.")  # fmt: skip
@click.option("--min-samples-leaf", type=mlstack.CommaList(TREES), default="1")
@click.option("--folds", type=click.IntRange(min=2), default=5)
@click.option("--random-state", type=int, default=42)
@mlstack.experiment_option
@mlstack.run_name_option
def sweep(n_estimators, max_depth, min_samples_leaf, folds, random_state, experiment, run_name):
    """Grid-search a random forest on the wine data set and log every candidate to MLflow."""
    features, target = data.load_data()
    grid = {"n_estimators": n_estimators, "max_depth": max_depth,
            "min_samples_leaf": min_samples_leaf}  # fmt: skip
    candidates = len(n_estimators) * len(max_depth) * len(min_samples_leaf)
    with cluster.connected() as client:
        print(f"fitting {candidates} candidates x {folds} folds {cluster.describe(client)}")
        with mlstack.start_run(run_name=run_name, experiment=experiment) as run:
            mlflow.log_params({"folds": folds, "candidates": candidates,
                               "random_state": random_state})  # fmt: skip
            mlstack.log_dataset(data.as_dataset(features, target))
            with cluster.parallel(client), mlstack.timed("search_seconds"):
                results = cross_validate_grid(grid, folds, random_state, client=client)
            children = mlstack.log_candidates(results, experiment=experiment)
            best = results.loc[results["rank"] == 1].iloc[0]
            mlflow.log_params(best["params"])
            mlflow.log_metric("best_cv_accuracy", best["cv_accuracy"])
            mlflow.log_figure(plot_scores(results, folds), "plots/cv_accuracy_by_n_estimators.png")
            # The best candidate, refitted on all rows
            model = build_model(random_state=random_state).set_params(**best["params"])
            logged = mlstack.log_sklearn_model(
                model.fit(features, target), features, features.head(5)
            )

    chosen = ", ".join(f"{name}={value}" for name, value in best["params"].items())
    print(f"run {run.info.run_id} logged to experiment '{experiment}' with {len(children)} child "
          f"runs: best cv_accuracy={best['cv_accuracy']:.3f} ({chosen})")  # fmt: skip
    print(f"model: {logged.model_uri}")
    print(mlstack.open_line(run))


if __name__ == "__main__":
    sweep()
