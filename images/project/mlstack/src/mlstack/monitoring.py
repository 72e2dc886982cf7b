"""Monitoring of a released model: the requests its image recorded (JSON Lines, see
:mod:`mlstack.serving`) compared with the model's reference data (a sample of its training
features, logged with it by :func:`mlstack.log_sklearn_model`) by Evidently's data drift preset,
and logged to MLflow as a monitoring run.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import JobError
from .tracking import REFERENCE_FILE, failure

# The HTML report's name among the monitoring run's artifacts
REPORT_FILE = "drift_report.html"


@dataclass
class Drift:
    """What Evidently found.

    Attributes:
        scores: each column's drift score (the statistic or p-value of the test Evidently chose
            for it; see the report), by column name.
        drifted: the columns whose distribution drifted, in the reference's column order.
        share: the share of drifted columns, 0 to 1.
        rows: how many served rows were compared.
        snapshot: Evidently's result (``save_html``, ``dict``).
    """

    scores: dict[str, float]
    drifted: list[str]
    share: float
    rows: int
    snapshot: Any


def read_requests(folder: Path) -> Any:
    """The input rows of every request recorded in ``folder`` (its ``*.jsonl`` files, any depth).

    A file's last line cut short (no newline, not JSON: a server killed while writing it) is
    skipped and counted.

    Returns:
        A pandas DataFrame, one row per served row, in the files' order; ``.attrs["skipped"]``:
        how many cut-short last lines were skipped.

    Raises:
        JobError: when the folder is missing, holds no record, or a line is not a record
            (naming the file and line).
    """
    import pandas as pd

    if not folder.is_dir():
        raise JobError(
            f"--requests {folder}: no such folder; give the folder the release image records to"
        )
    frames, skipped = [], 0
    for path in sorted(folder.rglob("*.jsonl")):
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    inputs = json.loads(line)["inputs"]
                    frames.append(pd.DataFrame(inputs["data"], columns=inputs["columns"]))
                except json.JSONDecodeError:
                    if line.endswith("\n"):
                        raise JobError(f"{path}:{number} is not a request record") from None
                    skipped += 1
                except (KeyError, TypeError, ValueError) as error:
                    raise JobError(f"{path}:{number} is not a request record ({error})") from None
    if not frames:
        raise JobError(f"--requests {folder}: no recorded request (*.jsonl) in it")
    rows = pd.concat(frames, ignore_index=True)
    rows.attrs["skipped"] = skipped
    if skipped:
        from .jobs import logger

        logger().warning(
            "skipped %d cut-short last line%s of the request records (a server stopped while "
            "writing)",
            skipped,
            "" if skipped == 1 else "s",
        )
    return rows


def reference_data(model_uri: str) -> Any:
    """The reference data logged with the model at ``model_uri`` (a pandas DataFrame).

    Raises:
        JobError: when the model is not found, or was logged without reference data.
    """
    import mlflow
    import pandas as pd

    with failure(f"cannot read the model {model_uri}"), tempfile.TemporaryDirectory() as folder:
        path = (
            Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=folder)) / REFERENCE_FILE
        )
        if not path.is_file():
            raise JobError(
                f"{model_uri} has no reference data ({REFERENCE_FILE}); log it with "
                "mlstack.log_sklearn_model to monitor it"
            )
        return pd.read_parquet(path)


def detect_drift(reference: Any, current: Any) -> Drift:
    """Compare ``current`` rows with ``reference`` rows, column by column, with Evidently's
    ``DataDriftPreset`` (the test per column chosen by Evidently from the column's type and the
    number of rows). Only the reference's columns are compared.

    Raises:
        JobError: when ``current`` lacks a column of the reference.
    """
    from evidently import Report
    from evidently.presets import DataDriftPreset

    if missing := [column for column in reference.columns if column not in current.columns]:
        raise JobError(f"the recorded requests lack the model's columns {missing}")
    current = current[list(reference.columns)].astype(reference.dtypes.to_dict())
    snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference)
    result = snapshot.dict()
    scores: dict[str, float] = {}
    share = 0.0
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            scores[config["column"]] = float(metric["value"])
        elif config["type"].endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
    # Evidently's verdict per column: its ValueDrift test fails when the column drifted
    failed = {
        test["metric_config"]["params"].get("column")
        for test in result["tests"]
        if test["status"] == "FAIL"
        and test["metric_config"]["params"]["type"].endswith(":ValueDrift")
    }
    drifted = [column for column in reference.columns if column in failed]
    return Drift(scores=scores, drifted=drifted, share=share, rows=len(current), snapshot=snapshot)


def log_drift(drift: Drift, model_uri: str, max_share: float) -> None:
    """Log ``drift`` to the active run: Evidently's HTML report (:data:`REPORT_FILE`), each
    column's drift score (``drift_score.<column>``), the share and count of drifted columns and
    the rows compared as metrics; the monitored model (``model_uri``, and its registered name and
    version when it has them) and the drifted columns as tags.

    Raises:
        mlflow.exceptions.MlflowException: when the server refuses a value.
    """
    import mlflow

    from .release import parse_model_uri

    model = parse_model_uri(model_uri) or {}
    if "alias" in model:
        model["version"] = (
            mlflow.MlflowClient().get_model_version_by_alias(model["name"], model["alias"]).version
        )
    tags = {"mlstack.monitored_model": model_uri, "drifted_columns": ",".join(drift.drifted)}
    tags |= {f"model_{key}": str(model[key]) for key in ("name", "version") if key in model}
    mlflow.set_tags(tags)
    mlflow.log_params({"max_drift_share": max_share, "reference_model": model_uri})
    mlflow.log_metrics(
        {f"drift_score.{column}": score for column, score in drift.scores.items()}
        | {
            "drifted_columns_share": drift.share,
            "drifted_columns": len(drift.drifted),
            "rows": drift.rows,
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / REPORT_FILE
        drift.snapshot.save_html(str(report))
        mlflow.log_artifact(str(report))


def latest_run(experiment: str | None = None) -> Any:
    """The newest monitoring run (one :func:`log_drift` logged) of ``experiment`` (default:
    ``MLFLOW_EXPERIMENT_NAME``), as an ``mlflow.entities.Run``; ``None`` when there is none."""
    import mlflow

    from .settings import DEFAULT_EXPERIMENT, setting

    name = experiment or setting("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
    found = mlflow.search_runs(
        experiment_names=[name],
        filter_string="tags.`mlstack.monitored_model` != ''",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return found[0] if found else None


def report_html(run: Any, height: int = 900) -> str:
    """The monitoring ``run``'s Evidently report as an HTML ``<iframe>`` of ``height`` pixels, for
    a notebook (``IPython.display.HTML``): the report's scripts run in a frame of their own."""
    import html

    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        path = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=REPORT_FILE, dst_path=folder
        )
        page = Path(path).read_text(encoding="utf-8")
    return f'<iframe srcdoc="{html.escape(page)}" width="100%" height="{height}"></iframe>'
