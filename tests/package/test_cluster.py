"""mlstack.cluster's task running, without a cluster: the local path every laptop takes."""

from __future__ import annotations

import os

from mlstack import cluster


def power(base: int, exponent: int = 2) -> int:
    return base**exponent


def test_without_a_client_the_calls_run_locally_in_their_order():
    calls = [{"base": base, "exponent": 3} for base in range(6)]
    assert cluster.map_tasks(power, calls) == [0, 1, 8, 27, 64, 125]
    assert cluster.map_tasks(power, []) == []


class FakeClient:
    """Records what a distributed.Client would be asked to run (no cluster on the host)."""

    def __init__(self):
        self.submitted = []

    def submit(self, function, pure=True, **call):
        self.submitted.append((function, pure, call))
        return function(**call)

    def gather(self, futures):
        return list(futures)


def test_with_a_client_each_call_is_one_impure_task():
    client = FakeClient()
    assert cluster.map_tasks(power, [{"base": 2}, {"base": 3}], client) == [4, 9]
    assert [(pure, call) for _, pure, call in client.submitted] == [
        (False, {"base": 2}),
        (False, {"base": 3}),
    ]


def test_per_worker_computes_once_per_argument_in_a_process():
    computed = []

    @cluster.per_worker
    def load(path):
        computed.append(path)
        return (path, os.getpid())

    assert load("a") == load("a") and load("b")
    assert computed == ["a", "b"]
