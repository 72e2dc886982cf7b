"""Train a random forest on the wine data; log parameters, a learning curve, held-out metrics, a
confusion matrix and the model to MLflow. In the runner: docker compose run --rm bash python
train.py --n-estimators 200 --max-depth 6"""

import click
import mlflow
import mlstack
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, f1_score

from mlstack_demo import data
from mlstack_demo.model import build_model, grow

TREES = click.IntRange(min=1)


@mlstack.job
@click.option("--n-estimators", type=TREES, default=100)
@click.option("--max-depth", type=TREES, help="[default: unlimited]")
@click.option("--min-samples-leaf", type=TREES, default=1)
@click.option("--test-size", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.25, help="Share of rows held out for the metrics.")  # fmt: skip
@click.option("--random-state", type=int, default=42)
@click.option("--curve-steps", type=TREES, default=10, help="Points of the learning curve.")
@click.option("--register-model", metavar="NAME", help="Also register the model under NAME.")
@mlstack.experiment_option
@mlstack.run_name_option
def train(n_estimators, max_depth, min_samples_leaf, test_size, random_state, curve_steps,
          register_model, experiment, run_name):  # fmt: skip
    """Train a random forest on the wine data set and log it to MLflow."""
    features, target = data.load_data()
    x_train, x_test, y_train, y_test = data.split(features, target, test_size, random_state)
    model = build_model(max_depth, min_samples_leaf, random_state)
    with mlstack.start_run(run_name=run_name, experiment=experiment) as run:
        mlflow.log_params({"n_estimators": n_estimators, "max_depth": max_depth,
                           "min_samples_leaf": min_samples_leaf, "test_size": test_size,
                           "random_state": random_state, "curve_steps": curve_steps})  # fmt: skip
        mlstack.log_dataset(data.as_dataset(features, target))
        for n_trees in grow(model, x_train, y_train, n_estimators, curve_steps):
            mlflow.log_metric("curve_accuracy", model.score(x_test, y_test), step=n_trees)
        predicted = model.predict(x_test)
        metrics = {"accuracy": accuracy_score(y_test, predicted),
                   "f1_macro": f1_score(y_test, predicted, average="macro"),
                   "train_accuracy": model.score(x_train, y_train)}  # fmt: skip
        mlflow.log_metrics(metrics)
        plot = ConfusionMatrixDisplay.from_predictions(y_test, predicted)
        mlflow.log_figure(plot.figure_, "plots/confusion_matrix.png")
        logged = mlstack.log_sklearn_model(model, x_train, x_test.head(5), register_model)

    scores = ", ".join(f"{name}={value:.3f}" for name, value in metrics.items())
    print(f"run {run.info.run_id} logged to experiment '{experiment}': {scores}")
    print(f"model: {logged.model_uri}")
    if register_model:
        version = f"models:/{register_model}/{logged.registered_model_version}"
        print(f"registered: {version} (make serve MODEL=...)")
    print(mlstack.open_line(run))


if __name__ == "__main__":
    train()
