"""The commands' decisions and one-line messages: Docker's errors, Compose's version, WORKERS,
registries, Swarm's replica counts, the Debian base; and how a refusal reaches the terminal."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stackctl import base_image, cli, release, swarm
from stackctl.proc import Failure
from tests.helpers import REPO_ROOT


def test_a_socket_the_user_may_not_use_names_the_docker_group():
    stderr = (
        "permission denied while trying to connect to the Docker daemon socket at "
        "unix:///var/run/docker.sock: Get ...: dial unix /var/run/docker.sock: connect: "
        "permission denied"
    )
    assert "add yourself to the docker group" in cli.docker_problem(stderr)
    assert cli.docker_problem("Cannot connect to the Docker daemon").startswith(
        "the Docker daemon is not reachable; start Docker"
    )


def test_compose_versions_compare_as_numbers():
    assert cli.compose_version("v2.9.0") < cli.MIN_COMPOSE <= cli.compose_version("2.20.0")
    assert cli.compose_version("5.6.1") > cli.MIN_COMPOSE


@pytest.mark.parametrize("text, count", [("", 0), ("0", 0), ("2", 2), ("010", 10)])
def test_workers_is_a_whole_number(text, count):
    assert cli.workers_count(text) == count


@pytest.mark.parametrize("text", ["x", "-1", "1.5", " 2"])
def test_a_bad_workers_is_refused_with_the_command_that_works(text):
    with pytest.raises(Failure) as refused:
        cli.workers_count(text)
    assert str(refused.value) == (
        f"WORKERS={text} is not a number of Dask workers; use make up WORKERS=2, or make up "
        "for none"
    )
    with pytest.raises(Failure, match=r">= 1; use make swarm-up WORKERS=2$"):
        cli.workers_count("0", minimum=1, command="make swarm-up")


@pytest.mark.parametrize(
    "registry, address",
    [
        ("127.0.0.1:5000", ("127.0.0.1", 5000)),
        ("registry.example.invalid/team", ("registry.example.invalid", 443)),
    ],
)
def test_a_registry_names_where_it_answers(registry, address):
    assert release.registry_address(registry) == address


@pytest.mark.parametrize("registry", ["", "http://127.0.0.1:5000", "host:port"])
def test_a_bad_registry_is_refused(registry):
    with pytest.raises(Failure) as refused:
        release.registry_address(registry)
    assert refused.value.status == 2 and "make push REGISTRY=127.0.0.1:5000" in str(refused.value)


@pytest.mark.parametrize(
    "message, advice",
    [
        ("http: server gave HTTP response to HTTPS client", "insecure-registries"),
        ("x509: certificate signed by unknown authority", "/etc/docker/certs.d/r:5000/ca.crt"),
        ("unauthorized: authentication required", "docker login r:5000"),
        ("something else", "see Docker's message above"),
    ],
)
def test_a_refused_push_gets_advice_for_its_cause(message, advice):
    assert advice in release.push_advice(message, "r:5000")


def test_swarm_counts_a_service_ready_when_every_replica_runs():
    assert swarm.replicas_met("2/2") and swarm.replicas_met("1/1 (max 1 per node)")
    assert not swarm.replicas_met("1/2") and not swarm.replicas_met("")


def test_the_debian_base_is_named_by_its_suite_and_gets_updates_and_security():
    assert base_image.suite_of("debian:trixie-slim") == "trixie"
    assert base_image.suite_of("debian:bookworm") == "bookworm"
    assert base_image.sources("http://m/debian", "http://m/debian-security", "trixie") == (
        "deb http://m/debian trixie main\n"
        "deb http://m/debian trixie-updates main\n"
        "deb http://m/debian-security trixie-security main\n"
    )


def test_the_dashboard_link_is_the_hosts_url():
    assert cli.dask_config("http://127.0.0.1:8787") == (
        'distributed:\n  dashboard:\n    link: "http://127.0.0.1:8787/status"\n'
    )


def test_a_refusal_is_one_error_line_and_its_status():
    result = subprocess.run(
        [sys.executable, "scripts/stackctl", "init", "Bad_Name"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: 'Bad_Name' is not a valid project name; use lowercase letters, digits and "
        "dashes, starting and ending with a letter or digit, for example 'churn-model'"
    ]


def test_an_unknown_command_prints_the_usage():
    assert cli.main(["launch"]) == 2
    assert cli.main([]) == 2


def test_make_config_masks_every_secret_and_nothing_else():
    text = "JUPYTER_TOKEN: abc123\nPASSWORD: abc123456\nPORT: 5000\n"
    assert cli.masked(text, ["abc123456", "abc123", ""]) == (
        "JUPYTER_TOKEN: masked-secret\nPASSWORD: masked-secret\nPORT: 5000\n"
    )


def test_gpu_mode_needs_dockers_nvidia_runtime():
    gpu = "compose.yaml:compose.gpu.yaml"
    runtimes = '{"io.containerd.runc.v2":{"path":"runc"},"runc":{"path":"runc"}}'
    problem = cli.gpu_problem(gpu, runtimes)
    assert "NVIDIA Container Toolkit" in problem and "make up GPU=0" in problem
    assert cli.gpu_problem(gpu, None) == problem
    assert cli.gpu_problem(gpu, '{"nvidia":{"path":"nvidia-container-runtime"}}') is None
    assert cli.gpu_problem("compose.yaml:compose.team.yaml", runtimes) is None


def test_make_up_says_what_the_active_store_holds_and_what_its_disk_has_free():
    line = cli.space_line("s3-data", "2147483648\n53687091200\n")
    assert line == "Store:   s3-data holds 2.0GB; 50GB free on its disk"
    assert cli.space_line("mlflow-data", "du: cannot access '/data'") is None
