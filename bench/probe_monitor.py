"""Monitoring probe, run inside the runner container (`monitor` of `make bench`): writes ROWS
served rows as the release image records them (the wine features, 20 rows per request record)
into a folder of the project, then runs monitor.py on them as a user does and measures it.
Prints one JSON object: ``{"rows": N, "seconds": ..., "peak_rss_bytes": ..., "exit": status}``
(monitor.py's wall time, its peak resident memory, and its exit status: 0 or 1 for drift).

Usage: python bench/probe_monitor.py --model URI [--rows 10000]
"""

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
from sklearn.datasets import load_wine


@click.command()
@click.option("--model", required=True)
@click.option("--rows", type=click.IntRange(min=1), default=10_000)
def probe(model: str, rows: int) -> None:
    """Time monitor.py on ROWS recorded rows."""
    features = load_wine(as_frame=True).data
    served = features.sample(n=rows, replace=True, random_state=0)
    with tempfile.TemporaryDirectory(dir=".") as folder:
        with (Path(folder) / "requests-bench.jsonl").open("w") as records:
            for start in range(0, rows, 20):
                batch = served.iloc[start : start + 20]
                inputs = json.loads(batch.to_json(orient="split", index=False))
                record = {"time": "", "request_id": str(start), "inputs": inputs, "outputs": []}
                records.write(json.dumps(record) + "\n")
        started = time.perf_counter()
        args = [sys.executable, "monitor.py", "--model", model, "--requests", folder]
        status = subprocess.run(args, check=False, stdout=subprocess.DEVNULL).returncode
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_bytes": peak, "exit": status}))


if __name__ == "__main__":
    probe()
