"""The two UIs as a person sees them, in a real browser (Debian's chromium, headless): the MLflow
page that train.py prints for a run shows that run's name and metric value, and JupyterLab opens
the sample notebook with its title rendered. Both pages are single-page apps, so the tests read
the DOM after their JavaScript ran, not the HTML the servers send.

chromium comes from scripts/provision.sh; the tests fail, not skip, without it."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

pytestmark = pytest.mark.stack

NOTEBOOK = "notebooks/explore_wine.ipynb"
# Seconds a test keeps reloading a page until it shows what the test looks for
PAGE_TIMEOUT = 40
CHROMIUM_FLAGS = (
    "--headless",
    # Root (CI) cannot use chromium's sandbox
    "--no-sandbox",
    "--disable-gpu",
    # No update checks, sync or other traffic of the browser's own
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Shared memory in /tmp: a container's 64 MB /dev/shm crashes the renderer
    "--disable-dev-shm-usage",
    "--window-size=1400,900",
    # Let the page's scripts run up to 15 s of (virtual) time before the DOM is read; the clock
    # stands still while network requests are pending
    "--virtual-time-budget=15000",
)


@dataclass
class Page:
    """What a person reads on a rendered page.

    Attributes:
        text: the visible text (no scripts or styles), whitespace collapsed to single spaces.
        headings: the text of each h1-h6 element, in document order, whitespace collapsed.
    """

    text: str = ""
    headings: list[str] = field(default_factory=list)


class _PageReader(HTMLParser):
    """Collects a DOM's visible text and headings into ``page``."""

    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._chunks: list[str] = []
        self._hidden = 0  # inside <script> or <style>
        self._headings: list[list[str]] = []  # the open h1-h6 elements' text

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._headings.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden = max(self._hidden - 1, 0)
        elif re.fullmatch(r"h[1-6]", tag) and self._headings:
            self.page.headings.append(" ".join(" ".join(self._headings.pop()).split()))

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._chunks.append(data)
            for heading in self._headings:
                heading.append(data)

    def close(self) -> None:
        super().close()
        self.page.text = " ".join(" ".join(self._chunks).split())


def read_page(dom: str) -> Page:
    """The visible text and headings of a serialised DOM (the HTML chromium's --dump-dom gives)."""
    reader = _PageReader()
    reader.feed(dom)
    reader.close()
    return reader.page


def rendered_dom(chromium: str, url: str, profile: Path, timeout: float = 90) -> str:
    """Load a page in headless chromium and return its DOM once the page's scripts ran.

    Args:
        chromium: the chromium command (a path).
        url: the page, with its fragment (MLflow's routes) and query (Jupyter's token).
        profile: an empty or reusable folder for chromium's --user-data-dir; the caller
            removes it.
        timeout: seconds before chromium and every process it started are killed.

    Returns:
        The DOM serialised as HTML (--dump-dom), after up to 15 s of the page's virtual time.

    Raises:
        AssertionError: when chromium exits with an error (its last stderr lines are shown).
        subprocess.TimeoutExpired: when chromium did not finish within ``timeout``.
    """
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url]
    # A session of its own, so that a timeout kills the renderers and helpers too
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as browser:
        try:
            dom, errors = browser.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.communicate()
            raise
    assert browser.returncode == 0, f"chromium exited with {browser.returncode}:\n{errors[-3000:]}"
    return dom


def wait_for_page(chromium: str, url: str, ready: Callable[[Page], bool]) -> Page:
    """Load ``url`` again until ``ready(page)`` holds or PAGE_TIMEOUT seconds have passed.

    Returns:
        The last page read, ready or not (the caller asserts on it, with the page's text).
    """
    deadline = time.monotonic() + PAGE_TIMEOUT
    with tempfile.TemporaryDirectory(prefix="mlstack-chromium-", ignore_cleanup_errors=True) as d:
        while True:
            page = read_page(rendered_dom(chromium, url, Path(d)))
            if ready(page) or time.monotonic() > deadline:
                return page
            time.sleep(1)


def as_javascript_writes(value: float) -> str:
    """A finite float as JavaScript's ``String(number)`` writes it, which is how the MLflow UI
    shows a metric value: every digit needed to read the float back (the digits of Python's
    repr, e.g. ``0.9333333333333333``, not a rounded ``0.933``), a whole number without
    ``.0``, and an exponent (``1e-7``) only below 1e-6 or from 1e21 on."""
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if 1e-6 <= abs(value) < 1e21:
        return format(Decimal(repr(value)), "f")
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", repr(value))


def notebook_title(path: Path) -> str:
    """The first markdown heading of a notebook (``# Title`` in its first markdown cell that has
    one), without the ``#`` marks: the title JupyterLab renders as a heading.

    Raises:
        AssertionError: when no markdown cell has a heading.
    """
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        heading = re.search(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", source, re.MULTILINE)
        if heading:
            return heading[1]
    raise AssertionError(f"{path} has no markdown heading")


@pytest.fixture(scope="module")
def chromium() -> str:
    """The chromium command, which scripts/provision.sh installs; the tests fail without it."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed: run scripts/provision.sh as root "
            "(it installs Debian's chromium package)",
            pytrace=False,
        )
    return path


@pytest.fixture
def jupyter_cleanup(stack):
    """Undo what opening a notebook in JupyterLab leaves behind: shuts down the sessions (and
    their kernels) started during the test, and removes notebooks/.ipynb_checkpoints when the
    test created it."""
    base = stack.urls["jupyter"].split("/lab")[0]
    auth = {"Authorization": f"token {stack.token()}"}
    checkpoints = stack.directory / "project/notebooks/.ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()
    sessions = requests.get(f"{base}/api/sessions", headers=auth, timeout=10)
    assert sessions.status_code == 200, sessions.text
    before = {session["id"] for session in sessions.json()}
    yield
    for session in requests.get(f"{base}/api/sessions", headers=auth, timeout=10).json():
        if session["id"] not in before:
            requests.delete(f"{base}/api/sessions/{session['id']}", headers=auth, timeout=30)
    if not had_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)


def test_mlflow_page_printed_by_train_shows_the_runs_name_and_metric(stack, chromium):
    name = f"ui-test-{secrets.token_hex(4)}"
    result = stack.compose(
        "run", "--rm", "bash", "python", "train.py", "--n-estimators", "5", "--run-name", name
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    logged = re.search(r"^run ([0-9a-f]{32}) logged to .*: accuracy=([\d.]+),", result.stdout, re.M)
    url = re.search(
        r"^open: (http://\S+/#/experiments/\d+/runs/([0-9a-f]{32}))$", result.stdout, re.M
    )
    assert logged and url and url[2] == logged[1], result.stdout
    # The value as the run stored it (train.py prints it rounded to 3 decimals)
    metrics = stack.rest("runs/get", run_id=logged[1])["run"]["data"]["metrics"]
    accuracy = {m["key"]: m["value"] for m in metrics}["accuracy"]
    assert f"{accuracy:.3f}" == logged[2]
    # The metrics table's row: the name, then the value (not a row such as curve_accuracy)
    row = re.compile(rf"(?<![\w.])accuracy {re.escape(as_javascript_writes(accuracy))}(?!\d)")

    page = wait_for_page(
        chromium, url[1], lambda page: name in page.headings and bool(row.search(page.text))
    )

    assert name in page.headings, f"{name!r} is not a heading of {url[1]}: {page.text[:3000]}"
    assert row.search(page.text), f"no row {row.pattern!r} at {url[1]}: {page.text[:3000]}"


def test_jupyterlab_opens_the_sample_notebook_with_its_title(stack, chromium, jupyter_cleanup):
    title = notebook_title(stack.directory / "project" / NOTEBOOK)
    printed = urlsplit(stack.urls["jupyter"])
    assert printed.path == "/lab" and printed.query.startswith("token="), stack.urls["jupyter"]
    url = urlunsplit(printed._replace(path=f"/lab/tree/{NOTEBOOK}"))

    # JupyterLab renders a markdown heading with a "¶" anchor link after its text
    def rendered_titles(page: Page) -> list[str]:
        return [heading.removesuffix("¶").strip() for heading in page.headings]

    page = wait_for_page(chromium, url, lambda page: title in rendered_titles(page))

    assert title in rendered_titles(page), (
        f"{title!r} is not a heading at {url}; headings: {page.headings[:30]}; "
        f"text: {page.text[:3000]}"
    )


def test_mlflow_home_has_no_telemetry_notice_and_the_experiment_opens_on_its_runs(stack, chromium):
    # A browser that never opened this server (a new profile for each page load)
    home = wait_for_page(
        chromium, f"{stack.urls['mlflow']}/#/", lambda p: "Welcome to MLflow" in p.text
    )
    assert "Welcome to MLflow" in home.text, home.text[:3000]
    assert "collects usage data" not in home.text, home.text[:3000]

    name = f"view-{secrets.token_hex(4)}"
    result = stack.compose(
        "run", "--rm", "bash", "python", "train.py", "--n-estimators", "2", "--run-name", name
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    opened = re.search(r"^open: (http://\S+/#/experiments/\d+)/runs/", result.stdout, re.M)
    assert opened, result.stdout
    # The experiment's page, as its link in the UI opens it: the model-training view, its runs
    # listed by name (MLflow's GenAI view opens on an overview of traces instead)
    page = wait_for_page(chromium, opened[1], lambda p: name in p.text)
    assert name in page.text and "Runs" in page.headings, page.text[:3000]
    assert "Ask questions about your experiments" not in page.text, "the assistant opened itself"


def test_telemetry_is_off_in_the_server_its_ui_and_every_container(stack, docker_client):
    # The server tells its UI that telemetry is off (MLflow's answer when the opt-out is set;
    # otherwise it fetches a remote config); the notice of its home page is tested above
    telemetry = requests.get(f"{stack.urls['mlflow']}/ajax-api/3.0/mlflow/ui-telemetry", timeout=30)
    assert telemetry.status_code == 200, telemetry.text
    assert telemetry.json() == {
        "disable_ui_telemetry": True,
        "disable_ui_events": [],
        "ui_rollout_percentage": 0,
    }
    label = {"label": f"com.docker.compose.project={stack.project}"}
    containers = docker_client.containers.list(filters=label)
    assert {c.labels["com.docker.compose.service"] for c in containers} >= {"mlflow", "jupyter"}
    for container in containers:
        assert "MLFLOW_DISABLE_TELEMETRY=true" in container.attrs["Config"]["Env"], container.name
    runner = stack.compose(
        "run", "--rm", "--no-deps", "bash", "python", "-c",
        "from mlflow.telemetry.utils import is_telemetry_disabled; print(is_telemetry_disabled())",
    )  # fmt: skip
    assert runner.stdout.strip().splitlines()[-1] == "True", runner.stdout + runner.stderr
