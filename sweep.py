"""Search the random forest's hyperparameters by cross-validation on the project's data (the
model and data of train.py) and track the search in MLflow: one parent run, one child run per
candidate.

Run it in the runner container, from the repo root:

    docker compose run --rm bash python sweep.py --n-estimators 50 100 200 --max-depth 3 6

The fits run on the Dask cluster's workers when `make up WORKERS=N` started one, locally
otherwise; the job says which. Each child run holds a candidate's parameters and
cross-validated metrics; the parent the best parameters, the best score, the best model refitted
on all rows (signature, input example) and a plot of the score against the number of trees.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence

from mlstack_demo import cluster, data, tracking
from mlstack_demo.model import build_model, cross_validate_grid
from train import positive_int


def depth(text: str) -> int | None:
    """Parse a ``--max-depth`` value: a whole number of at least 1, or ``none`` (no limit).

    Raises:
        argparse.ArgumentTypeError: for anything else.
    """
    return None if text.lower() == "none" else positive_int(text)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the grid and the run options from the command line (``None`` reads ``sys.argv``).

    Raises:
        SystemExit: with status 2 and argparse's one-line message, for a bad option.
    """
    parser = argparse.ArgumentParser(
        description="Grid-search a random forest on the wine data set by cross-validation and "
        "log every candidate to MLflow (on the Dask cluster when one is up)."
    )
    parser.add_argument("--n-estimators", type=positive_int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument(
        "--max-depth", type=depth, nargs="+", default=[3, 6], help="'none': unlimited"
    )
    parser.add_argument("--min-samples-leaf", type=positive_int, nargs="+", default=[1])
    parser.add_argument("--folds", type=positive_int, default=5, help="(default: 5)")
    parser.add_argument("--random-state", type=int, default=42)
    parser.add_argument(
        "--experiment",
        default=os.environ.get("MLFLOW_EXPERIMENT_NAME", "Default"),
        help="MLflow experiment (default: MLFLOW_EXPERIMENT_NAME from env/project.env)",
    )
    parser.add_argument("--run-name", default=None, help="default: MLflow picks one")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("argument --folds: cross-validation needs at least 2 folds")
    return args


def plot_scores(results: Any, folds: int):
    """Cross-validated accuracy against the number of trees, one line per maximum depth (the
    other parameters at the best candidate's), with the spread over the folds."""
    import matplotlib.pyplot as plt
    import pandas as pd

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


def sweep(args: argparse.Namespace, log) -> dict[str, Any]:
    """Run the search and log it: the parent run, a child per candidate, the best model.

    Returns:
        ``run`` (the parent ``mlflow.ActiveRun``), ``children`` (their run ids), ``best``
        (the best parameters), ``score`` (its mean CV accuracy, 0..1), ``model_uri``.

    Raises:
        cluster.ClusterError: when the cluster is expected but unusable, or fails mid-search.
        mlflow.exceptions.MlflowException: when the tracking server refuses a request.
    """
    import matplotlib.pyplot as plt
    import mlflow

    features, target = data.load_data()
    grid = {
        "n_estimators": args.n_estimators,
        "max_depth": args.max_depth,
        "min_samples_leaf": args.min_samples_leaf,
    }
    candidates = len(args.n_estimators) * len(args.max_depth) * len(args.min_samples_leaf)

    client = cluster.connect()
    try:
        print(
            f"fitting {candidates} candidates x {args.folds} folds {cluster.describe(client)}",
            flush=True,
        )
        with tracking.start_run(run_name=args.run_name, experiment=args.experiment) as run:
            mlflow.log_params(
                {"folds": args.folds, "candidates": candidates, "random_state": args.random_state}
            )
            tracking.log_dataset(
                mlflow.data.from_pandas(
                    features.assign(**{data.TARGET: target}), name="wine", targets=data.TARGET
                )
            )
            started = time.monotonic()
            with cluster.parallel(client):
                results = cross_validate_grid(grid, args.folds, args.random_state, client=client)
            seconds = time.monotonic() - started
            log.info("search done in %.1f s", seconds)
            children = tracking.log_candidates(results, experiment=args.experiment)

            best = results.loc[results["rank"] == 1].iloc[0]
            mlflow.log_params(best["params"])
            mlflow.log_metrics({"best_cv_accuracy": best["cv_accuracy"], "search_seconds": seconds})
            figure = plot_scores(results, args.folds)
            mlflow.log_figure(figure, "plots/cv_accuracy_by_n_estimators.png")
            plt.close(figure)
            # The best candidate, refitted on all rows
            model = build_model(random_state=args.random_state).set_params(**best["params"])
            model.fit(features, target)
            model_info = tracking.log_sklearn_model(model, features, features.head(5))
    finally:
        if client is not None:
            client.close()
    return {
        "run": run,
        "children": children,
        "best": best["params"],
        "score": best["cv_accuracy"],
        "model_uri": model_info.model_uri,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Returns:
        The exit status: 0, or 1 when the cluster, tracking or the disk fails (one ``error:``
        line on stderr, also in ``logs/jobs.log``); argparse exits with 2 on a bad option.
    """
    tracking.load_settings()
    args = parse_args(argv)

    def job(log) -> None:
        result = sweep(args, log)
        best = ", ".join(f"{name}={value}" for name, value in result["best"].items())
        print(
            f"run {result['run'].info.run_id} logged to experiment '{args.experiment}' with "
            f"{len(result['children'])} child runs: best cv_accuracy={result['score']:.3f} ({best})"
        )
        print(f"model: {result['model_uri']}")
        print(tracking.open_line(result["run"]))

    return tracking.run_job("sweep", job)


if __name__ == "__main__":
    sys.exit(main())
