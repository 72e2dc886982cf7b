"""make join's and make leave's decisions without a server: URLs, the mode's compose files, and
the one line for each way the check of a member's credentials fails."""

from __future__ import annotations

import ssl
import urllib.error

import pytest

from stackctl import join, modes
from stackctl.proc import Failure


def test_a_servers_url_is_kept_without_its_trailing_slash():
    assert join.checked_url("https://mlflow.example.org/") == "https://mlflow.example.org"
    assert join.checked_url("http://127.0.0.1:5000/mlflow") == "http://127.0.0.1:5000/mlflow"


@pytest.mark.parametrize(
    "url", ["", "mlflow.example.org", "ftp://x", "https://a b", "https://x?y=1"]
)
def test_a_bad_url_is_one_line_with_the_command_that_works(url):
    with pytest.raises(Failure) as refused:
        join.checked_url(url)
    assert refused.value.status == 2 and "make join URL=https://" in str(refused.value)


def test_member_mode_is_one_compose_file_added_last_and_taken_away():
    assert join.modes.with_member("compose.yaml:compose.gpu.yaml", True) == (
        "compose.yaml:compose.gpu.yaml:compose.member.yaml"
    )
    assert modes.with_member("compose.yaml:compose.member.yaml", False) == "compose.yaml"
    assert modes.is_member("compose.yaml:compose.member.yaml")
    with pytest.raises(Failure) as refused:
        modes.compose_files("compose.yaml:compose.member.yaml", team="1")
    assert "make leave first" in str(refused.value)


def http_error(code: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("https://m.example.org", code, "", {}, None)


@pytest.mark.parametrize(
    "error, says",
    [
        (http_error(401), "refused ada's password"),
        (http_error(404), "not as an MLflow server with user accounts"),
        (http_error(502), "answered HTTP 502"),
        (
            urllib.error.URLError(ssl.SSLCertVerificationError(1, "self-signed certificate")),
            "is not trusted",
        ),
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), "cannot reach"),
    ],
)
def test_each_failed_check_names_its_cause_and_that_nothing_was_written(error, says):
    line = join.problem("https://m.example.org", "ada", error)
    assert says in line and line.endswith("nothing was written") and "\n" not in line
