"""Ports: one per published service, remembered; a remembered port another program holds moves
to a free one with one line; a port set in the environment is left to it."""

from __future__ import annotations

import socket

from stackctl import ports
from stackctl.envfile import EnvFile

KEYS = [entry.key for entry in ports.PUBLISHED]


def env_with(tmp_path, **values: str) -> EnvFile:
    env = EnvFile(tmp_path / ".env")
    for key, value in values.items():
        env.set(key, value)
    return env


def picker(*numbers: int):
    left = list(numbers)
    return lambda: left.pop(0)


def nobody(service: str, port: int) -> None:
    return None


def test_each_service_without_a_port_gets_one_without_checking(tmp_path):
    env = env_with(tmp_path)
    said = ports.assign(env, {}, check=False, owner=nobody, pick=picker(5001, 5002, 5003, 5004))
    assert [env.get(key) for key in KEYS] == ["5001", "5002", "5003", "5004"] and said == []


def test_a_remembered_free_port_is_kept(tmp_path):
    env = env_with(tmp_path, **dict.fromkeys(KEYS, "6000"))
    said = ports.assign(env, {}, check=True, owner=nobody, is_free=lambda port: True, pick=None)
    assert [env.get(key) for key in KEYS] == ["6000"] * len(KEYS) and said == []


def test_a_port_held_by_the_service_itself_is_kept(tmp_path):
    env = env_with(
        tmp_path,
        MLSTACK_MLFLOW_PORT="6001",
        MLSTACK_JUPYTER_PORT="6002",
        MLSTACK_DASK_DASHBOARD_PORT="6003",
        MLSTACK_SCHEDULER_PORT="6004",
    )
    ours = {
        "mlflow": "127.0.0.1:6001",
        "jupyter": "127.0.0.1:6002",
        "dask-scheduler": None,
        "scheduler": "127.0.0.1:6004",
    }
    said = ports.assign(
        env,
        {},
        check=True,
        owner=lambda service, port: ours[service],
        is_free=lambda port: port == 6003,
        pick=None,
    )
    assert said == [] and env.get("MLSTACK_MLFLOW_PORT") == "6001"


def test_a_port_another_program_holds_moves_with_one_line(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        env = env_with(tmp_path, **dict.fromkeys(KEYS, str(taken)))
        env.set("MLSTACK_JUPYTER_PORT", "7000")
        said = ports.assign(
            env,
            {},
            check=True,
            owner=nobody,
            pick=picker(7001, 7002, 7003),
            is_free=lambda port: port == 7000,
        )
    assert env.get("MLSTACK_MLFLOW_PORT") == "7001" and env.get("MLSTACK_JUPYTER_PORT") == "7000"
    assert said[0] == (
        f"ports: 127.0.0.1:{taken} is taken by another program; MLflow now uses "
        "127.0.0.1:7001 (MLSTACK_MLFLOW_PORT in .env)"
    )
    assert len(said) == 3


def test_only_missing_ports_are_given_without_check(tmp_path):
    env = env_with(tmp_path, MLSTACK_MLFLOW_PORT="1")
    ports.assign(
        env, {}, check=False, owner=nobody, pick=picker(2, 3, 4), is_free=lambda port: False
    )
    assert env.get("MLSTACK_MLFLOW_PORT") == "1"


def test_a_port_set_in_the_environment_is_left_alone_even_empty(tmp_path):
    env = env_with(tmp_path)
    ports.assign(env, {"MLSTACK_MLFLOW_PORT": ""}, check=True, owner=nobody, pick=picker(1, 2, 3))
    assert env.get("MLSTACK_MLFLOW_PORT") == "" and env.get("MLSTACK_JUPYTER_PORT") == "1"


def test_the_probe_tells_a_held_port_from_a_free_one():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        assert ports.bind(holder.getsockname()[1]) is None
    assert ports.bind(ports.free_port()) is not None
    assert ports.bind(70000) is None
