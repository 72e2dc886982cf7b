"""The cross-validated search of sweep.py: one task per candidate and fold, run where it is sent.
A real Dask cluster in this process (scheduler and workers as threads) stands in for the one
`make up WORKERS=N` starts; its task stream shows which tasks ran on the workers."""

from __future__ import annotations

import pytest

from mlstack_demo.model import cross_validate_grid

GRID = {"n_estimators": [4, 8], "max_depth": [2]}
FOLDS = 3


def test_a_local_search_ranks_every_candidate():
    results = cross_validate_grid(GRID, folds=FOLDS)
    assert [params["n_estimators"] for params in results["params"]] == [4, 8]
    assert sorted(results["rank"]) == [1, 2]
    assert results["cv_accuracy"].between(0, 1).all()


def local_client(workers: int):
    """A client of a new in-process cluster of `workers` one-thread workers.

    The cluster is passed explicitly, so the test never depends on whether the stack's own
    cluster runs (make up WORKERS=N).
    """
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        processes=False, n_workers=workers, threads_per_worker=1, dashboard_address=None
    )
    return distributed.Client(cluster), cluster


@pytest.mark.parametrize("workers", [1, 2])
def test_on_a_cluster_each_fit_is_one_task_on_a_worker(workers):
    distributed = pytest.importorskip("distributed")
    client, cluster = local_client(workers)
    with cluster, client:
        with distributed.get_task_stream(client) as stream:
            results = cross_validate_grid(GRID, folds=FOLDS, client=client)
    assert sorted(results["rank"]) == [1, 2]
    # Every fit ran on a worker (joblib ran them all in the client for one worker thread), and
    # none of its trees became a task of its own
    keys = [record["key"] for record in stream.data]
    assert len(keys) == len(results) * FOLDS, keys
    assert all("score_fold" in str(key) for key in keys), keys


def test_under_joblibs_dask_backend_a_fit_sends_no_tree_to_the_cluster():
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    client, cluster = local_client(2)
    with cluster, client:
        with distributed.get_task_stream(client) as stream, parallel_config(backend="dask"):
            cross_validate_grid(GRID, folds=FOLDS)
    keys = [str(record["key"]) for record in stream.data]
    assert keys and not any("_parallel_build_trees" in key for key in keys), keys
