"""Search probe, run inside the runner container (`dask-search` of `make bench`).

Times one hyperparameter search, ``cross_validate_grid()`` of the project's package (the code
sweep.py runs, without its MLflow logging; the bench's project is ``bench_project``, made by
make init's code), either locally (``--jobs 1``: joblib's sequential backend, in this one
process; ``--jobs N``: joblib's default loky backend with ``n_jobs=N`` worker processes, what a
user on one machine would use instead of Dask) or on the Dask cluster of `make up WORKERS=N` (as
sweep.py calls it, inside ``cluster.parallel``). Prints one JSON object on stdout, last:
``{"where": "local"|"cluster", "workers": N, "seconds": <wall time of the search>, "warmup_s":
{...}, "fits": <fits>, "fit_s": <seconds inside model.fit, summed>, "start": <epoch s>, "stop":
<epoch s>, "tasks": [...]}``; on the cluster ``tasks`` holds the scheduler's task stream of the
search (one entry per Dask task, that is per fit: ``worker``, ``start``/``stop`` of its computation
in epoch seconds, ``transfer_s`` and ``deserialize_s``), so the host can tell fits from overhead;
``cpu_s`` has the CPU seconds each process that fits (the Dask workers, this one, or this one and
its loky workers) got during the search, which tells whether they had a core each on a shared
machine. Containers share the host's clock.

Before the timed search each process that will fit (this one, or every worker) imports
scikit-learn and loads the data once, as it would have after any earlier search; how long that
first use took is ``warmup_s`` (seconds by worker address, or ``{"local": ...}``).

Usage: python bench/probe_dask.py --where cluster --workers 2 --n-estimators 300 600
    --max-depth 4 8 --folds 5
"""

from __future__ import annotations

import argparse
import json
import time


def warm_up() -> float:
    """Import what a search task imports and load the data (cached per process, see
    ``model._data``); return the seconds it took."""
    started = time.perf_counter()
    import sklearn.ensemble  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import sklearn.model_selection  # noqa: F401

    from bench_project import model

    model._data(None)
    return time.perf_counter() - started


def task_stream(records: list[dict]) -> list[dict]:
    """The task stream's records (``distributed.get_task_stream``) cut down to what the host
    needs: per task its worker, compute start and stop (epoch seconds), and the seconds spent
    moving and unpickling its inputs."""
    tasks = []
    for record in records:
        parts = {part["action"]: part for part in record.get("startstops", ())}
        if "compute" not in parts:
            continue

        def spent(action: str) -> float:
            return sum(
                p["stop"] - p["start"] for p in record["startstops"] if p["action"] == action
            )

        tasks.append(
            {
                "worker": record["worker"],
                "start": parts["compute"]["start"],
                "stop": parts["compute"]["stop"],
                "transfer_s": spent("transfer"),
                "deserialize_s": spent("deserialize"),
            }
        )
    return tasks


def main() -> None:
    """Parse the options, run the warm-up and the timed search, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--where", choices=("local", "cluster"), required=True)
    parser.add_argument("--workers", type=int, default=1, help="workers to wait for")
    parser.add_argument("--jobs", type=int, default=1, help="local: joblib's n_jobs")
    parser.add_argument("--n-estimators", type=int, nargs="+", required=True)
    parser.add_argument("--max-depth", type=int, nargs="+", required=True)
    parser.add_argument("--folds", type=int, required=True)
    args = parser.parse_args()

    import joblib

    from mlstack import cluster
    from bench_project.model import cross_validate_grid

    grid = {"n_estimators": args.n_estimators, "max_depth": args.max_depth}
    client = None
    if args.where == "cluster":
        client = cluster.connect()
        if client is None:
            raise SystemExit("error: no Dask cluster is expected here; run make up WORKERS=N")
        client.wait_for_workers(args.workers, timeout=120)
        warmup = client.run(warm_up)
        backend = cluster.parallel(client)
    else:
        warmup = {"local": warm_up()}
        if args.jobs == 1:
            # One process: what joblib runs for n_jobs=1
            backend = joblib.parallel_config(backend="sequential")
        else:
            # loky's worker processes, started (and warmed up) before the timed search, as they
            # stay alive between searches
            backend = joblib.parallel_config(backend="loky", n_jobs=args.jobs)
            with backend:
                joblib.Parallel()(joblib.delayed(warm_up)() for _ in range(args.jobs))

    def cpu_seconds() -> dict[str, float]:
        """CPU seconds (user + system) of each process that fits, by name."""
        if client is not None:
            return client.run(time.process_time)
        import psutil

        seconds = {"local": time.process_time()}
        for child in psutil.Process().children(recursive=True):
            try:
                times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            seconds[f"loky {child.pid}"] = times.user + times.system
        return seconds

    records: list[dict] = []
    cpu_before = cpu_seconds()
    start = time.time()
    started = time.perf_counter()
    if client is None:
        with backend:
            # What the project's Parallel(n_jobs=-1) really runs under this setting
            jobs = joblib.effective_n_jobs(-1)
            results = cross_validate_grid(grid, args.folds)
    else:
        from distributed import get_task_stream

        with get_task_stream(client) as stream, backend:
            results = cross_validate_grid(grid, args.folds, client=client)
        records = stream.data
    seconds = time.perf_counter() - started
    stop = time.time()
    cpu_after = cpu_seconds()
    cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    workers = len(client.scheduler_info(n_workers=-1)["workers"]) if client else 0
    if client is not None:
        client.close()
    print(
        json.dumps(
            {
                "where": args.where,
                "workers": workers,
                "jobs": jobs if client is None else None,
                "seconds": seconds,
                "warmup_s": warmup,
                "fits": len(results) * args.folds,
                "fit_s": float(results["fit_seconds"].sum() * args.folds),
                "cpu_s": cpu,
                "start": start,
                "stop": stop,
                "tasks": task_stream(records),
            }
        )
    )


if __name__ == "__main__":
    main()
