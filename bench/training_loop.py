"""The training-loop benchmark: a loop logging many metric values as the stack's jobs log them
(mlstack's tracking: asynchronous, batched) against MLflow's default (one synchronous call per
value), from a job in the runner on the stack `make up` starts.

- ``training-loop-logging``: the time the loop spends logging, the wait at the run's end
  included; every value must be stored.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from bench.measure import attempt, last_json_line
from bench.table import Row, ratio, ratio_text, seconds, verdict
from bench.workspace import Workspace

NAME = "training-loop"
ROWS = ("training-loop-logging",)


@dataclass
class LoopResults:
    """bench/probe_loop.py's JSON (seconds of the loops and of the wait at the end, values
    stored each way), and why it failed."""

    logging: dict = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def describe(args: argparse.Namespace, results: LoopResults) -> str:
    """How much was measured, for the results file's settings line."""
    return f"one loop of {args.loop_values:,} values per way of logging"


def measure(ws: Workspace, args: argparse.Namespace) -> LoopResults:
    """bench/probe_loop.py as a job in the runner (`docker compose run`), logging
    ``args.loop_values`` values each way; a failure is kept in ``errors``."""
    results = LoopResults()

    def run_loop() -> None:
        ws.run(["make", "--no-print-directory", "up"], timeout=600)
        args_ = ["run", "--rm", "-T", "bash", "python", "bench/probe_loop.py"]
        _, output = ws.compose(*args_, "--values", str(args.loop_values), timeout=1800)
        results.logging = last_json_line(output)

    attempt(
        results.errors,
        "training-loop-logging",
        f"a training loop logging {args.loop_values:,} values, sync and as jobs log",
        run_loop,
    )
    return results


def rows(r: LoopResults) -> list[Row]:
    """The table's row of this benchmark."""
    loop = r.logging
    if not loop:
        return [Row(ROWS[0], "a training loop's logging", "—", "—", "—", "—", "error")]
    stack_s = loop["async_loop_s"] + loop["async_end_s"]
    whole = loop["sync_stored"] == loop["async_stored"] == loop["values"]
    share = ratio(stack_s, loop["sync_loop_s"])
    return [
        Row(
            ROWS[0],
            f"a training loop logging {loop['values']:,} metric values: time spent logging "
            "(the stack's jobs: the loop plus the wait at the run's end)",
            f"{seconds(stack_s)} ({seconds(loop['async_loop_s'])} + "
            f"{seconds(loop['async_end_s'])})",
            f"{seconds(loop['sync_loop_s'])} (MLflow's default, synchronous)",
            ratio_text(share),
            f"≤ 0.1 × baseline, every value stored ({loop['async_stored']:,} / "
            f"{loop['sync_stored']:,})",
            verdict(None if share is None else share <= 0.1 and whole),
        )
    ]


def details(r: LoopResults) -> list[str]:
    """The failure, if any, as the results file's list item."""
    return [f"`{name}`: error: {error}" for name, error in sorted(r.errors.items())]
