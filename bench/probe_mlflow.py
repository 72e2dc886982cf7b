"""Logging probe, run inside the runner container (`log-metric-latency` and
`log-batch-throughput` of `make bench`).

Times synchronous ``mlflow.log_metric`` calls and ``MlflowClient.log_batch`` calls of 1,000
metrics against one tracking server, and prints the raw timings as one JSON object on stdout:
``{"log_metric_s": [...], "log_batch_s": [...], "batch_size": 1000, "health_s": [...],
"raw_log_metric_s": [...]}`` (seconds per call). The last two split a log_metric call's time: a
bare ``GET /health`` (network and HTTP server) and the same log-metric request sent with plain
requests (the server's handler and store, without the MLflow client's own work). It only needs
the MLflow client that the science layer installs (and its requests); the host does the maths.

Usage: python bench/probe_mlflow.py --uri http://mlflow:5000 [--calls 1000] [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import mlflow
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric

# Untimed calls first: imports, the HTTP connection and the server's lazy paths warm up
WARMUP_CALLS = 20
BATCH_SIZE = 1000


def time_log_metric(calls: int) -> list[float]:
    """Seconds taken by each of ``calls`` synchronous ``mlflow.log_metric`` calls in the active
    run (one HTTP request each, on the client's reused connection)."""
    for step in range(WARMUP_CALLS):
        mlflow.log_metric("warmup", 0.0, step=step, synchronous=True)
    timings = []
    for step in range(calls):
        start = time.perf_counter()
        mlflow.log_metric("latency_probe", float(step), step=step, synchronous=True)
        timings.append(time.perf_counter() - start)
    return timings


def time_log_batch(client: MlflowClient, run_id: str, batches: int) -> list[float]:
    """Seconds taken by each of ``batches`` ``log_batch`` calls of ``BATCH_SIZE`` metrics; the
    metrics have distinct steps so the server stores every one of them."""
    timings = []
    for batch in range(batches + 1):
        now_ms = int(time.time() * 1000)
        metrics = [
            Metric(f"batch_{j % 10}", float(j), now_ms, batch * BATCH_SIZE + j)
            for j in range(BATCH_SIZE)
        ]
        start = time.perf_counter()
        client.log_batch(run_id, metrics=metrics, synchronous=True)
        elapsed = time.perf_counter() - start
        if batch > 0:  # the first batch is a warm-up
            timings.append(elapsed)
    return timings


def time_requests(uri: str, run_id: str, calls: int) -> tuple[list[float], list[float]]:
    """Seconds per bare ``GET /health`` and per log-metric REST call made with one
    requests.Session (a reused connection, like the MLflow client's), ``calls`` of each."""
    session = requests.Session()
    # Logged in as the MLflow client is, when the server has auth on (the team stack)
    if os.environ.get("MLFLOW_TRACKING_USERNAME"):
        session.auth = (
            os.environ["MLFLOW_TRACKING_USERNAME"],
            os.environ["MLFLOW_TRACKING_PASSWORD"],
        )
    health, raw = [], []
    for step in range(calls + WARMUP_CALLS):
        start = time.perf_counter()
        session.get(f"{uri}/health", timeout=30).raise_for_status()
        middle = time.perf_counter()
        body = {"run_id": run_id, "key": "raw_probe", "value": 1.0, "step": step}
        body["timestamp"] = int(time.time() * 1000)
        session.post(
            f"{uri}/api/2.0/mlflow/runs/log-metric", json=body, timeout=30
        ).raise_for_status()
        end = time.perf_counter()
        if step >= WARMUP_CALLS:
            health.append(middle - start)
            raw.append(end - middle)
    return health, raw


def main() -> None:
    """Parse the options, run both probes in one new run, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True, help="tracking server URI")
    parser.add_argument("--calls", type=int, default=1000, help="timed log_metric calls")
    parser.add_argument("--batches", type=int, default=20, help="timed log_batch calls")
    parser.add_argument("--profile-calls", type=int, default=200, help="timed bare requests")
    parser.add_argument("--experiment", default="mlstack-bench", help="experiment to log to")
    args = parser.parse_args()

    mlflow.set_tracking_uri(args.uri)
    mlflow.set_experiment(args.experiment)
    client = MlflowClient(args.uri)
    with mlflow.start_run() as run:
        metric_timings = time_log_metric(args.calls)
        batch_timings = time_log_batch(client, run.info.run_id, args.batches)
        health, raw = time_requests(args.uri, run.info.run_id, args.profile_calls)
    result = {"log_metric_s": metric_timings, "log_batch_s": batch_timings}
    result |= {"batch_size": BATCH_SIZE, "health_s": health, "raw_log_metric_s": raw}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
