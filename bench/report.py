"""The table of `make bench`: figures, baselines, ratios and targets from one run's Results,
the machine it ran on, and the measured breakdowns that explain the figures (Markdown)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.measure import (
    ADDED_PACKAGE,
    DASK_FOLDS,
    DASK_GRID,
    MLFLOW_LOCK,
    Results,
)
from bench.workspace import SECOND_PROJECT_SUFFIX


@dataclass
class Row:
    """One line of the table; text cells, already formatted."""

    number: int
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


# Figure 11's targets: 2 workers at least this many times as fast as 1 (on 2 cores), and as
# fast as joblib's n_jobs=2 in one runner within this factor
DASK_SPEEDUP_TARGET = 1.7
DASK_JOBLIB_TARGET = 0.9


def rows(r: Results, figures: list[int] | None = None) -> list[Row]:
    """The table's rows, one per figure of the issue, computed within this one run; only those
    numbered in ``figures`` when given."""
    table = []

    stack_p50, stack_p95 = median(r.stack_logging.get("log_metric_s", [])), p95(
        r.stack_logging.get("log_metric_s", [])
    )
    base_p50, base_p95 = median(r.default_logging.get("log_metric_s", [])), p95(
        r.default_logging.get("log_metric_s", [])
    )
    q50, q95 = ratio(stack_p50, base_p50), ratio(stack_p95, base_p95)
    table.append(
        Row(
            1,
            f"sync `log_metric` latency from the runner, p50 / p95 "
            f"({len(r.stack_logging.get('log_metric_s', [])):,} calls)",
            f"{millis(stack_p50)} / {millis(stack_p95)}",
            f"{millis(base_p50)} / {millis(base_p95)}",
            "—" if q50 is None else f"{q50:.2f} / {q95:.2f}",
            "p50 ≤ 1.0 × baseline",
            verdict(None if q50 is None else q50 <= 1.0),
        )
    )

    stack_tp, base_tp = throughput(r.stack_logging), throughput(r.default_logging)
    table.append(
        Row(
            2,
            "`log_batch` throughput, batches of 1,000 metrics",
            "—" if stack_tp is None else f"{stack_tp:,.0f} metrics/s",
            "—" if base_tp is None else f"{base_tp:,.0f} metrics/s",
            _ratio_text(ratio(stack_tp, base_tp)),
            "≥ 10,000 metrics/s",
            verdict(None if stack_tp is None else stack_tp >= 10_000),
        )
    )

    stack_rss = sum(r.stack_rss_bytes.values()) if r.stack_rss_bytes else None
    q = ratio(stack_rss, r.default_rss_bytes)
    table.append(
        Row(
            3,
            "idle RSS of the stack (mlflow + jupyter)",
            size(stack_rss),
            f"{size(r.default_rss_bytes)} (default `mlflow server`)",
            _ratio_text(q),
            "≤ 0.3 × baseline",
            verdict(None if q is None else q <= 0.3),
        )
    )

    cold, base_cold = median(r.cold_stack_s), median(r.cold_baseline_s)
    q = ratio(cold, base_cold)
    table.append(
        Row(
            4,
            "cold build of every image (the stack's and one project's) on top of Debian",
            seconds(cold),
            f"{seconds(base_cold)} (one pip Dockerfile)",
            _ratio_text(q),
            "≤ 1.0 × baseline",
            verdict(None if q is None else q <= 1.0),
        )
    )

    rebuild = median(r.rebuild_s)
    q = ratio(rebuild, cold)
    table.append(
        Row(
            5,
            "rebuild after adding one package to `requirements.txt` (the project's images)",
            seconds(rebuild),
            f"{seconds(cold)} (cold build)",
            _ratio_text(q),
            "≤ 0.1 × cold build",
            verdict(None if q is None else q <= 0.1),
        )
    )

    up, alone = median(r.make_up_s), median(r.server_start_s)
    table.append(
        Row(
            6,
            "`make up`, images built, until all healthy",
            seconds(up),
            f"{seconds(alone)} (`mlflow server` start to `/health` ok)",
            _ratio_text(ratio(up, alone)),
            "≤ baseline + 2 s",
            verdict(None if up is None or alone is None else up <= alone + 2),
        )
    )

    compose_run, docker_run = median(r.compose_run_s), median(r.docker_run_s)
    q = ratio(compose_run, docker_run)
    table.append(
        Row(
            7,
            "`docker compose run --rm bash python -c pass`",
            seconds(compose_run),
            f"{seconds(docker_run)} (`docker run --rm`)",
            _ratio_text(q),
            "≤ 1.5 × baseline",
            verdict(None if q is None else q <= 1.5),
        )
    )

    largest = max(r.image_bytes.values()) if r.image_bytes else None
    q = ratio(r.unique_bytes, largest)
    table.append(
        Row(
            8,
            "disk: all images (the stack's and one project's), shared layers counted once",
            size(r.unique_bytes),
            f"{size(largest)} (largest image)",
            _ratio_text(q),
            "≤ 1.15 × baseline",
            verdict(None if q is None else q <= 1.15),
        )
    )

    answer = median(r.kernel.get("kernel_answer_s", []))
    table.append(
        Row(
            9,
            "Jupyter: `POST /api/kernels` to `1+1` answered",
            seconds(answer),
            "—",
            "—",
            "report",
            "—",
        )
    )

    # A second project shares the stack's images: it pays only for its own two. The baseline is
    # what it would cost without sharing, a whole stack of its own: the first project's cold
    # build (figure 4) and all its images' bytes (figure 8)
    second, added = median(r.second_project_s), r.second_project_added_bytes
    q_time, q_disk = ratio(second, cold), ratio(added, r.unique_bytes)
    table.append(
        Row(
            10,
            f"a second project on the same machine (`<project>{SECOND_PROJECT_SUFFIX}`): "
            "cold build of its own images / disk they add",
            f"{seconds(second)} / {size(added)}",
            f"{seconds(cold)} / {size(r.unique_bytes)} (first project: cold build / all images)",
            "—" if q_time is None or q_disk is None else f"{q_time:.2f} / {q_disk:.2f}",
            "≤ 0.2 × baseline, both",
            verdict(None if q_time is None or q_disk is None else max(q_time, q_disk) <= 0.2),
        )
    )
    one, two, local, jobs = (
        median(r.dask_search_s.get(name, []))
        for name in ("1 worker", "2 workers", "local", "joblib n_jobs=2")
    )
    speedup, against_joblib = ratio(one, two), ratio(jobs, two)
    table.append(
        Row(
            11,
            f"Dask: the same search ({grid_text(DASK_GRID)}), 2 workers / 1 worker / joblib "
            "`n_jobs=2` in one runner / locally in one process; speed-up of 2 workers over 1 "
            "worker and over joblib",
            f"{seconds(two)} / {seconds(one)} / {seconds(jobs)} / {seconds(local)}",
            f"{seconds(one)} (1 worker) / {seconds(jobs)} (joblib `n_jobs=2`)",
            "—" if speedup is None else f"{speedup:.2f} / {_ratio_text(against_joblib)}",
            f"≥ {DASK_SPEEDUP_TARGET} / ≥ {DASK_JOBLIB_TARGET}; one process ≥ 60 s",
            verdict(
                None
                if speedup is None or against_joblib is None
                else speedup >= DASK_SPEEDUP_TARGET
                and against_joblib >= DASK_JOBLIB_TARGET
                and (local or 0) >= 60
            ),
        )
    )

    idle = r.dask_idle_rss_bytes
    table.append(
        Row(
            12,
            "idle RSS of the Dask cluster (scheduler + 2 workers)",
            size(sum(idle.values())) if idle else "—",
            "—",
            "—",
            "report",
            "—",
        )
    )
    loop = r.loop_logging
    if loop:
        stack_s = loop["async_loop_s"] + loop["async_end_s"]
        whole = loop["sync_stored"] == loop["async_stored"] == loop["values"]
        share = ratio(stack_s, loop["sync_loop_s"])
        table.append(
            Row(
                14,
                f"a training loop logging {loop['values']:,} metric values: time spent logging "
                "(the stack's jobs: the loop plus the wait at the run's end)",
                f"{seconds(stack_s)} ({seconds(loop['async_loop_s'])} + "
                f"{seconds(loop['async_end_s'])})",
                f"{seconds(loop['sync_loop_s'])} (MLflow's default, synchronous)",
                _ratio_text(share),
                f"≤ 0.1 × baseline, every value stored ({loop['async_stored']:,} / "
                f"{loop['sync_stored']:,})",
                verdict(None if share is None else share <= 0.1 and whole),
            )
        )
    for row in table:
        if row.number in r.errors and row.met == "—" and row.target != "report":
            row.met = "error"
    return [row for row in table if figures is None or row.number in figures]


def grid_text(grid: dict[str, list[int]]) -> str:
    """A grid and the folds as ``n_estimators 150, 300 × max_depth 4, 8 × 5 folds = 20 fits``."""
    fits = DASK_FOLDS
    for values in grid.values():
        fits *= len(values)
    parts = [f"{name} {', '.join(map(str, values))}" for name, values in grid.items()]
    return f"{' × '.join(parts)} × {DASK_FOLDS} folds = {fits} fits"


def search_parts(probe: dict) -> dict[str, float]:
    """Where one search's time went (bench/probe_dask.py's result), in seconds unless named:
    ``fits`` (inside model.fit, summed), ``tasks`` (Dask tasks), ``compute``
    (the tasks' computation, summed: fits, predictions, scores), ``busy`` (compute ÷ (workers
    × wall): the share of the workers' time spent computing), ``first`` (search start to the
    first task computing: joblib, scheduler, transfer) and ``tail`` (last task done to the
    search's end)."""
    parts = {"wall": probe["seconds"], "fits": probe["fit_s"]}
    tasks = probe.get("tasks") or []
    if tasks:
        compute = sum(task["stop"] - task["start"] for task in tasks)
        parts |= {
            "tasks": len(tasks),
            "compute": compute,
            "busy": compute / (max(probe["workers"], 1) * probe["seconds"]),
            "first": min(task["start"] for task in tasks) - probe["start"],
            "tail": probe["stop"] - max(task["stop"] for task in tasks),
        }
    return parts


def dask_breakdown(r: Results) -> list[str]:
    """Figure 11 and 12's lines of the breakdown (medians over the repetitions)."""
    items = []
    for name, probes in r.dask_probes.items():
        parts = [search_parts(probe) for probe in probes]
        wall = ", ".join(f"{p['wall']:.1f}" for p in parts)
        text = (
            f"11. {name}: runs {wall} s; inside `model.fit` "
            f"{seconds(median([p['fits'] for p in parts]))} of the "
            f"{probes[0]['fits']} fits together"
        )
        if probes[0].get("jobs"):
            text += f"; joblib ran {probes[0]['jobs']} processes"
        if "tasks" in parts[0]:
            text += (
                f"; {median([p['tasks'] for p in parts]):.0f} Dask tasks "
                f"computing {seconds(median([p['compute'] for p in parts]))} together, the "
                f"workers busy {median([p['busy'] for p in parts]):.0%} of the wall time; first "
                f"task computing {seconds(median([p['first'] for p in parts]))} after the start, "
                f"last done {seconds(median([p['tail'] for p in parts]))} before the end"
            )
        cpu = [sum(probe["cpu_s"].values()) for probe in probes]
        text += (
            f"; CPU time of the fitting processes {seconds(median(cpu))}, i.e. "
            f"{median([c / p['wall'] for c, p in zip(cpu, parts)]):.2f} cores on average "
            "(what the shared machine gave them)"
        )
        warmup = probes[0]["warmup_s"]
        text += (
            "; first use of each process (imports, data; before the timed search): "
            + ", ".join(f"{value:.1f}" for value in warmup.values())
            + " s"
        )
        items.append(text)
    cores = {
        name: median([sum(p["cpu_s"].values()) / p["seconds"] for p in probes])
        for name, probes in r.dask_probes.items()
    }
    one, two = median(r.dask_search_s.get("1 worker", [])), median(
        r.dask_search_s.get("2 workers", [])
    )
    if one and two and cores.get("1 worker") and cores.get("2 workers"):
        share = cores["2 workers"] / cores["1 worker"]
        items.append(
            f"11. the machine's share: 2 workers got {share:.2f} times the cores 1 worker got "
            f"({cores['2 workers']:.2f} against {cores['1 worker']:.2f}); the speed-up per core "
            f"given, {one / two / share:.2f}, is what is left of the scaling when the machine's "
            "load is set aside (1.00: no loss to Dask)"
        )
    if r.dask_up_s:
        parts = ", ".join(
            f"{what} {', '.join(f'{v:.1f}' for v in values)} s"
            for what, values in r.dask_up_s.items()
        )
        items.append(f"11. cluster start and rescaling (until healthy): {parts}")
    for label, values in (
        ("idle", r.dask_idle_rss_bytes),
        ("after the searches", r.dask_busy_rss_bytes),
    ):
        if values:
            parts = ", ".join(f"{name} {size(value)}" for name, value in values.items())
            items.append(f"12. RSS {label}: {parts}")
    return items


def _ratio_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def table_markdown(table: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| # | figure | stack | baseline (same run) | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table:
        cells = [
            str(row.number),
            row.figure,
            row.stack,
            row.baseline,
            row.ratio,
            row.target,
            row.met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timeline(profiles: list[dict[str, float]]) -> str:
    """Events of repeated start-ups as ``event +<median seconds> s``, in the first one's order."""
    return ", ".join(
        f"{key} +{median([p[key] for p in profiles if key in p]):.1f} s" for key in profiles[0]
    )


def breakdown_markdown(r: Results) -> str:
    """The measured breakdowns behind the figures, as a Markdown list (medians of the run)."""
    items = []
    for name, logging in (("stack", r.stack_logging), ("default server", r.default_logging)):
        if logging:
            items.append(
                f"1. {name}: p50 of a bare `GET /health` {millis(median(logging['health_s']))}, "
                f"of the log-metric request sent with plain requests "
                f"{millis(median(logging['raw_log_metric_s']))}, of `mlflow.log_metric` "
                f"{millis(median(logging['log_metric_s']))}; log_batch p50 "
                f"{millis(median(logging['log_batch_s']))} per 1,000 metrics"
            )
    if r.stack_rss_bytes:
        parts = ", ".join(f"{name} {size(value)}" for name, value in r.stack_rss_bytes.items())
        items.append(f"3. idle RSS per container: {parts}")
    if r.cold_stack_images_s:
        parts = build_levels(r.cold_stack_levels, r.cold_stack_images_s)
        cold = median(r.cold_stack_s)
        rest = cold - level_seconds(r.cold_stack_levels, r.cold_stack_images_s)
        items.append(
            f"4. cold build per image (make build, in order; [side by side]): {parts}; "
            f"the rest of the {seconds(cold)} (Debian base check, CA certificates, between "
            f"levels) {seconds(rest)}"
        )
    if r.mlflow_version:
        items.append(
            f"4. baseline: bench/baseline.Dockerfile, `pip install` of mlflow=={r.mlflow_version} "
            f"(from {MLFLOW_LOCK}), JupyterLab and the science set in one layer"
        )
    if r.rebuild_rebuilt:
        rebuilt = sorted({", ".join(names) or "nothing" for names in r.rebuild_rebuilt})
        items.append(
            f"5. images with a step not from the cache after adding `{ADDED_PACKAGE}`: "
            f"{'; '.join(rebuilt)} (runs: {', '.join(f'{v:.1f}' for v in r.rebuild_s)} s)"
        )
    if r.build_noop_s is not None:
        items.append(
            f"5. `make build` with nothing changed: {seconds(r.build_noop_s)} "
            f"(images with a step not from the cache: "
            f"{', '.join(r.build_noop_rebuilt) or 'none'})"
        )
    if r.make_up_profiles:
        parts = timeline(r.make_up_profiles)
        items.append(f"6. `make up` timeline (seconds after make started): {parts}")
    if r.server_start_profiles:
        parts = timeline(r.server_start_profiles)
        items.append(f"6. `mlflow server` alone (seconds after `docker start`): {parts}")
    if r.make_up_first_s is not None:
        items.append(f"6. first `make up` (creates the database): {seconds(r.make_up_first_s)}")
    if r.default_server_start_s is not None:
        items.append(
            f"6. default `mlflow server` (4 workers, jobs on), fresh store: /health ok after "
            f"{seconds(r.default_server_start_s)}"
        )
    if r.compose_run_s:
        parts = ", ".join(
            f"{part} {seconds(median(values))}" for part, values in r.compose_run_parts_s.items()
        )
        items.append(
            f"7. runs: `docker compose run` {', '.join(f'{v:.2f}' for v in r.compose_run_s)} s; "
            f"`docker run` {', '.join(f'{v:.2f}' for v in r.docker_run_s)} s"
            + (f"; parts (medians): {parts}" if parts else "")
        )
    if r.image_bytes:
        parts = ", ".join(
            f"{name} {size(r.image_bytes[name])} ({size(r.own_bytes[name])} its own)"
            for name in r.image_bytes
        )
        items.append(
            f"8. image sizes (and the bytes of the layers each adds to the image it is built on; "
            f"base: Debian included): {parts}"
        )
        parts = "; ".join(
            f"{size(nbytes)} {name}: `{_short(created_by)}`"
            for name, nbytes, created_by in r.biggest_layers
        )
        items.append(f"8. biggest layers: {parts}")
    if r.kernel:
        items.append(
            f"9. `POST /api/kernels` answered after {millis(median(r.kernel['post_s']))}; "
            f"`1+1` answered after {seconds(median(r.kernel['kernel_answer_s']))} "
            f"(runs: {', '.join(f'{v:.2f}' for v in r.kernel['kernel_answer_s'])} s)"
        )
    if r.second_project_images_s:
        parts = build_levels(r.second_project_levels, r.second_project_images_s)
        rebuilt = sorted({", ".join(names) or "nothing" for names in r.second_project_rebuilt})
        items.append(
            f"10. second project's `make build` per image ([side by side]): {parts}; "
            f"images with a step not "
            f"from the cache: {'; '.join(rebuilt)} "
            f"(runs: {', '.join(f'{v:.1f}' for v in r.second_project_s)} s)"
        )
    if r.second_project_image_bytes:
        parts = ", ".join(
            f"{name} {size(r.second_project_image_bytes[name])} "
            f"({size(r.second_project_own_bytes[name])} not already present)"
            for name in r.second_project_image_bytes
        )
        items.append(
            f"10. second project's images: {parts}; added to the first project's "
            f"{size(r.unique_bytes)}: {size(r.second_project_added_bytes)}; its requirements.txt "
            "is the template's plus a comment line, so its own layers are built, not taken from "
            "the first project's cache"
        )
    items += dask_breakdown(r)
    for number, error in sorted(r.errors.items()):
        items.append(f"{number}. error: {error}")
    return "\n".join(f"- {item}" for item in items)


def build_levels(levels: list[list[str]], builds: list[dict[str, float]]) -> str:
    """Median build seconds per image, levels in order, images built side by side in brackets:
    ``base 14.8 s, science 34.2 s, [mlflow 4.1 s, jupyter 23.3 s, bash 3.4 s]``. ``builds``
    holds one ``Build.images_s`` per repetition."""
    parts = []
    for level in levels:
        text = ", ".join(
            f"{name} {seconds(median([b[name] for b in builds if name in b]))}" for name in level
        )
        parts.append(text if len(level) == 1 else f"[{text}]")
    return ", ".join(parts)


def level_seconds(levels: list[list[str]], builds: list[dict[str, float]]) -> float:
    """The sum over levels of the slowest image's median build seconds (levels one after the
    other, the images of a level side by side)."""
    return sum(
        max(median([b[name] for b in builds if name in b]) for name in level) for level in levels
    )


def _short(instruction: str) -> str:
    """A Dockerfile instruction from an image history, without the builder's prefix, cut short."""
    if not instruction:
        return "(imported Debian root file system)"
    text = instruction.replace("/bin/bash -o pipefail -c ", "").replace("/bin/sh -c ", "")
    text = text.replace("#(nop) ", "").replace("|", "/").strip()
    return text if len(text) <= 70 else text[:67] + "..."


def document(
    r: Results, machine: dict[str, str], settings: str, figures: list[int] | None = None
) -> str:
    """The whole results file: what ran where, the table (the rows of ``figures``, or all),
    the breakdowns."""
    about = ", ".join(f"{key} {value}" for key, value in machine.items())
    return (
        "# mlstack benchmark results\n\n"
        f"Written by `make bench`. Machine: {about}. {settings}\n\n"
        f"{table_markdown(rows(r, figures))}\n\n"
        "Where the time and bytes go (measured in the same run):\n\n"
        f"{breakdown_markdown(r)}\n"
    )
