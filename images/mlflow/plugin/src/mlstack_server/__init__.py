"""mlstack's plugin for the MLflow tracking server (images/mlflow)."""
