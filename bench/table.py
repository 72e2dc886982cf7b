"""The table of `make bench`: one row per figure, named (``cold-build``, ``idle-memory``, ...),
with the stack's value, the baseline measured in the same run, their ratio and the target; the
cell formats the benchmarks share; and the results file around the table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class Row:
    """One line of the table; text cells, already formatted.

    Attributes:
        name: the figure's name, unique in the table (``cold-build``); docs cite rows by it.
    """

    name: str
    figure: str
    stack: str
    baseline: str
    ratio: str
    target: str
    met: str


def median(values: list[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def p95(values: list[float]) -> float | None:
    """The 95th percentile (inclusive method), or None for fewer than two values."""
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else None


def seconds(value: float | None) -> str:
    """``12.3 s``, or ``—`` when not measured."""
    return "—" if value is None else f"{value:.1f} s"


def millis(value: float | None) -> str:
    """A duration given in seconds as ``7.9 ms``, or ``—``."""
    return "—" if value is None else f"{value * 1000:.1f} ms"


def size(value: float | None) -> str:
    """Bytes as decimal GB (``1.23 GB``), MB, kB or B, or ``—``."""
    if value is None:
        return "—"
    for unit, scale, digits in (("GB", 1e9, 2), ("MB", 1e6, 0), ("kB", 1e3, 0)):
        if value >= scale:
            return f"{value / scale:.{digits}f} {unit}"
    return f"{value:.0f} B"


def ratio(stack: float | None, baseline: float | None) -> float | None:
    """stack / baseline, or None when either is missing."""
    return stack / baseline if stack is not None and baseline else None


def verdict(met: bool | None) -> str:
    """``yes`` / ``**no**`` / ``—`` (not measured)."""
    return "—" if met is None else ("yes" if met else "**no**")


def throughput(logging: dict) -> float | None:
    """Median metrics per second of the log_batch calls of one probe result."""
    batch = median(logging.get("log_batch_s", []))
    return logging["batch_size"] / batch if batch else None


def ratio_text(value: float | None) -> str:
    """A ratio with two decimals (``0.87``), or ``—``."""
    return "—" if value is None else f"{value:.2f}"


def table_markdown(table: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| figure | what | stack | baseline (same run) | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table:
        cells = [f"`{row.name}`", row.figure, row.stack, row.baseline, row.ratio, row.target]
        lines.append("| " + " | ".join([*cells, row.met]) + " |")
    return "\n".join(lines)


def timeline(profiles: list[dict[str, float]]) -> str:
    """Events of repeated start-ups as ``event +<median seconds> s``, in the first one's order."""
    return ", ".join(
        f"{key} +{median([p[key] for p in profiles if key in p]):.1f} s" for key in profiles[0]
    )


def document(machine: dict[str, str], settings: str, table: list[Row], details: list[str]) -> str:
    """The whole results file: the machine and the run's settings, the table, then ``details``
    (Markdown list items, each starting with the name of the figure it explains)."""
    about = ", ".join(f"{key} {value}" for key, value in machine.items())
    return (
        "# mlstack benchmark results\n\n"
        f"Written by `make bench`. Machine: {about}. {settings}\n\n"
        f"{table_markdown(table)}\n\n"
        "Where the time and bytes go (measured in the same run):\n\n"
        + "".join(f"- {item}\n" for item in details)
    )
