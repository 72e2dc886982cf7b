"""Compare the requests a released model served (its image records them, see docs/production.md)
with the model's training data: Evidently's data drift report and scores, logged to MLflow as a
monitoring run. Exits 1 when a larger share of columns drifted than MONITOR_MAX_DRIFT_SHARE
allows, so a scheduled job or CI can alert. In the runner: docker compose run --rm bash python
monitor.py --model models:/wine-classifier/1 --requests monitoring/requests"""

from pathlib import Path

import click
import mlstack
from mlstack import monitoring


@mlstack.job
@click.option(
    "--model", metavar="URI", required=True, help="The served model: models:/<name>/<version>"
)
@click.option("--requests", "folder", metavar="DIR", required=True, type=click.Path(path_type=Path),
              help="The folder the release image recorded the requests in.")  # fmt: skip
@click.option("--max-drift-share", type=click.FloatRange(0, 1), envvar="MONITOR_MAX_DRIFT_SHARE",
              required=True, show_envvar=True, help="Exit 1 above this share of drifted columns.")  # fmt: skip
@mlstack.experiment_option
def monitor(model, folder, max_drift_share, experiment):
    """Check the served requests for data drift against the model's reference data."""
    served = monitoring.read_requests(folder)
    drift = monitoring.detect_drift(monitoring.reference_data(model), served)
    with mlstack.start_run(run_name="monitoring", experiment=experiment) as run:
        monitoring.log_drift(drift, model, max_drift_share)
    drifted = ", ".join(drift.drifted) or "none"
    print(f"drift: {drift.share:.0%} of columns drifted ({drifted}) over {drift.rows} served rows")
    print(mlstack.open_line(run))
    return 1 if drift.share > max_drift_share else 0


if __name__ == "__main__":
    monitor()
