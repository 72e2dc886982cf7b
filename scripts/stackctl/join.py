"""A member's clone on a team's shared tracking server: ``make join URL=... USER=...`` checks
the member's credentials against the server, then records the server and the credentials in
.env (MLSTACK_TEAM_URL, MLSTACK_TEAM_USER, MLSTACK_TEAM_PASSWORD) and adds compose.member.yaml
to the mode (COMPOSE_FILE), so that `make up` starts Jupyter and the runner without a local
tracking server, logging as the member. ``make leave`` takes it back: the local tracking server,
whose data was never touched. The password is read without echo on a terminal, else from
standard input; it is never on a command line."""

from __future__ import annotations

import base64
import getpass
import json
import os
import re
import ssl
import sys
import urllib.error
import urllib.request
from typing import Sequence

from stackctl import modes
from stackctl.envfile import EnvFile
from stackctl.proc import RUNTIME, Failure, compose, output, say
from stackctl.users import checked_name

MEMBER_KEYS = ("MLSTACK_TEAM_URL", "MLSTACK_TEAM_USER", "MLSTACK_TEAM_PASSWORD", "MLSTACK_TEAM_CA")
# The trust store the member's containers use (compose.member.yaml): their image's own, plus
# the shared server's CA when make join was given one; written by make up
CA_BUNDLE = "ca-bundle.pem"
# The auth app's "who am I", which answers 200 only to valid credentials
WHO_AM_I = "/api/2.0/mlflow/users/current"
URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s?#]*)?$")


def checked_url(url: str) -> str:
    """``url`` without a trailing slash, when it is an http(s) URL of a server.

    Raises:
        Failure: it is empty or not such a URL (status 2).
    """
    if not url:
        raise Failure(
            "say which server: make join URL=https://mlflow.example.org USER=<your user>",
            status=2,
        )
    if not URL.match(url):
        raise Failure(
            f"'{url}' is not a server's URL (http:// or https://, a host name, an optional "
            "port and path); make join URL=https://mlflow.example.org USER=<your user>",
            status=2,
        )
    return url.rstrip("/")


def tls_context(ca: str) -> ssl.SSLContext:
    """The default trust store plus ``ca`` (a PEM file or a folder), if any, verifying as
    strictly as the images' Python 3.13 does (RFC 5280: a CA without its key usage extension is
    refused there, so it is refused here first, where nothing was written yet)."""
    context = ssl.create_default_context()
    context.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    if ca and os.path.isdir(ca):
        context.load_verify_locations(capath=ca)
    elif ca:
        context.load_verify_locations(cafile=ca)
    return context


def problem(url: str, user: str, error: BaseException) -> str:
    """The one line for a failed check of ``user`` at ``url``, naming which of: a wrong
    password, a server without accounts, an untrusted certificate, an unreachable server."""
    nothing = "nothing was written"
    if isinstance(error, urllib.error.HTTPError):
        if error.code in (401, 403):
            return (
                f"the server at {url} refused {user}'s password; check it (the team's admin "
                f"gives a new one with make user-reset NAME={user}); {nothing}"
            )
        if error.code == 404:
            return (
                f"{url} answers, but not as an MLflow server with user accounts (HTTP 404 on "
                f"{WHO_AM_I}); check the URL; {nothing}"
            )
        return f"the server at {url} answered HTTP {error.code}; {nothing}"
    reason = getattr(error, "reason", error)
    if isinstance(reason, ssl.SSLCertVerificationError) or isinstance(error, ssl.SSLError):
        detail = getattr(reason, "verify_message", "") or str(reason)
        return (
            f"the certificate of {url} is not trusted ({detail}); give the CA that signed it: "
            f"make join ... CA=/path/to/ca.pem; {nothing}"
        )
    return f"cannot reach {url} ({reason}); check the URL and your network; {nothing}"


def whoami(url: str, user: str, password: str, ca: str) -> str:
    """The user name the server at ``url`` knows these credentials as.

    Raises:
        Failure: :func:`problem`'s line.
    """
    request = urllib.request.Request(url + WHO_AM_I)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    context = tls_context(ca) if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(request, timeout=15, context=context) as response:
            answer = json.loads(response.read().decode() or "{}")
    except (urllib.error.URLError, ssl.SSLError, OSError) as error:
        raise Failure(problem(url, user, error)) from None
    except ValueError:
        raise Failure(f"{url} does not answer like an MLflow server; nothing was written")
    return str((answer.get("user") or {}).get("username") or user)


def read_password(url: str, user: str) -> str:
    """The member's password: asked without echo on a terminal, else standard input's first
    line.

    Raises:
        Failure: none given.
    """
    if sys.stdin is not None and sys.stdin.isatty():
        password = getpass.getpass(f"Password of {user} at {url}: ")
    else:
        password = (sys.stdin.readline() if sys.stdin else "").rstrip("\r\n")
    if not password:
        raise Failure(
            f"no password given for {user}; type it when asked, or pipe it in: make join ... "
            "< password-file"
        )
    return password


def checked_ca(ca: str) -> str:
    """The absolute path of ``ca`` (a PEM file of the server's CA), or "" when none is given.

    Raises:
        Failure: it is not a readable file of PEM certificates (status 2).
    """
    if not ca:
        return ""
    path = os.path.abspath(ca)
    try:
        with open(path) as pem:
            if "-----BEGIN CERTIFICATE-----" not in pem.read():
                raise Failure(f"CA={ca} holds no PEM certificate", status=2)
    except OSError as error:
        raise Failure(f"CA={ca} cannot be read ({error.strerror})", status=2) from None
    return path


def join(argv: Sequence[str]) -> None:
    """``make join URL= USER= [CA=]``: argv is the URL, the user and the CA file of a server
    whose certificate a private CA signed.

    Raises:
        Failure: a bad URL or user, no password, this clone hosts the team server, or the
            check failed (:func:`problem`); .env is then unchanged.
    """
    url = checked_url(argv[0] if argv else "")
    user = checked_name(argv[1] if len(argv) > 1 else "", "join URL=... USER")
    env = EnvFile.load()
    files = env.get("COMPOSE_FILE") or modes.DEFAULT
    if modes.is_team(files):
        raise Failure(
            "this clone runs the team's tracking server itself (TEAM=1); join from a member's "
            "own clone, or make up TEAM=0 first"
        )
    ca = checked_ca(argv[2] if len(argv) > 2 else "")
    password = read_password(url, user)
    known = whoami(url, user, password, ca)
    env = EnvFile.load()
    env.set("MLSTACK_TEAM_URL", url)
    env.set("MLSTACK_TEAM_USER", known)
    env.set("MLSTACK_TEAM_PASSWORD", password)
    env.set("COMPOSE_FILE", modes.with_member(files, True))
    if ca:
        env.set("MLSTACK_TEAM_CA", ca)
    else:
        env.remove("MLSTACK_TEAM_CA")
    env.save()
    say(
        f"join: {known} on {url}; make up starts Jupyter and the runner logging there, without "
        "a local tracking server (make leave returns to it)"
    )


def leave(argv: Sequence[str] = ()) -> None:
    """``make leave``: the member's settings out of .env, the local tracking server back (its
    data as it was; `make up` starts it)."""
    env = EnvFile.load()
    files = env.get("COMPOSE_FILE") or modes.DEFAULT
    url = env.get("MLSTACK_TEAM_URL")
    if not modes.is_member(files) and not url:
        say("leave: this clone is on its own tracking server already")
        return
    for key in MEMBER_KEYS:
        env.remove(key)
    env.set("COMPOSE_FILE", modes.with_member(files, False))
    env.save()
    # The containers made for the shared server log there: they go, make up makes new ones
    compose("--profile", "*", "down", "--remove-orphans", check=False, quiet=True)
    say(f"leave: off {url}; make up starts the local tracking server with its earlier runs")


def write_ca_bundle(image: str) -> None:
    """Write RUNTIME/ca-bundle.pem: ``image``'s trust store (its EXTRA_CA_CERTS included) plus
    the shared server's CA (MLSTACK_TEAM_CA) when there is one. Runtime, not build time: a new
    CA needs no rebuild of the images.

    Raises:
        Failure: the image cannot be read or the CA file is gone.
    """
    store = output(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "cat",
            image,
            "/etc/ssl/certs/ca-certificates.crt",
        ]
    )
    if store is None:
        raise Failure(f"the trust store of {image} cannot be read; run make build")
    ca = EnvFile.load().get("MLSTACK_TEAM_CA")
    if ca:
        try:
            with open(ca) as pem:
                store += "\n" + pem.read()
        except OSError as error:
            raise Failure(
                f"the shared server's CA {ca} cannot be read ({error.strerror}); make join "
                "again with CA=..."
            ) from None
    RUNTIME.mkdir(parents=True, exist_ok=True)
    (RUNTIME / CA_BUNDLE).write_text(store + "\n")
