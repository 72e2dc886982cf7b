"""Figures in the manual come from `bench/results.md`, the benchmark's own output: a page that
states a measured figure (idle memory, an image's size, a build's or the benchmark's duration)
must state one that file holds, and a page citing a row cites one that exists."""

from __future__ import annotations

import re

from tests.helpers import REPO_ROOT

RESULTS = (REPO_ROOT / "bench/results.md").read_text()
PAGES = sorted((REPO_ROOT / "docs").glob("*.md")) + [REPO_ROOT / "README.md"]
# A number with a unit of what the benchmark measures: bytes and durations
FIGURE = re.compile(
    r"(?<![\w.])[~≈]?(\d[\d,]*(?:\.\d+)?) ?(kB|KB|MB|GB|MiB|GiB|ms|s|min|minutes)\b"
)
# What makes a paragraph's figures measured ones (settings such as a memory limit are not)
MEASURED = re.compile(
    r"\bidle\b|\bRSS\b|image size|\b(runner|release|model's) image\b|make bench|cold build|"
    r"\brebuild",
    re.IGNORECASE,
)
# A row cited by its name: "the `idle-memory` row of [the benchmark's results]"
ROW = re.compile(r"`([a-z0-9-]+)` rows? of \[?the benchmark", re.IGNORECASE)


def paragraphs():
    """(page name, paragraph) of every page but the one that includes the results."""
    for page in PAGES:
        if page.name == "benchmarks.md":
            continue
        for paragraph in re.split(r"\n\s*\n", page.read_text()):
            yield page.name, " ".join(paragraph.split())


def stated(figure: re.Match) -> str:
    """A figure as results.md writes it: ``1.48 GB``, ``23 min`` (``minutes`` shortened)."""
    unit = "min" if figure[2] == "minutes" else figure[2]
    return f"{figure[1]} {unit}"


def test_every_measured_figure_a_page_states_is_in_the_benchmarks_results():
    contradicted = [
        f"{name}: {stated(figure)} in '{paragraph[:80]}...'"
        for name, paragraph in paragraphs()
        if MEASURED.search(paragraph)
        for figure in FIGURE.finditer(paragraph)
        if stated(figure) not in RESULTS
    ]
    assert not contradicted, contradicted


def test_every_row_a_page_cites_exists():
    rows = set(re.findall(r"^\| `([a-z0-9-]+)` \|", RESULTS, re.MULTILINE))
    cited = [
        (name, row)
        for name, paragraph in paragraphs()
        for found in ROW.finditer(paragraph)
        for row in found.groups()
        if row
    ]
    assert cited, "no page cites a row: is ROW still right?"
    assert [each for each in cited if each[1] not in rows] == []


def test_the_check_fails_on_the_figures_the_docs_once_stated():
    # What the issue found: a runner image of 1.2 GB, idle memory of ~0.45 GB, a 20-minute bench
    for wrong in (
        "the 1.2 GB runner image",
        "idle, ~0.45 GB instead of ~3 GB",
        "make bench takes about 20 minutes",
    ):
        assert MEASURED.search(wrong)
        assert any(stated(figure) not in RESULTS for figure in FIGURE.finditer(wrong)), wrong
