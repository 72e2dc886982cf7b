"""The builds benchmark: how long the images take to build and how much disk they take.

- ``cold-build``: every image (the stack's and one project's) from a fresh ID of the Debian base,
  against bench/baseline.Dockerfile, the one-Dockerfile pip install of the ancestor projects;
  the two interleaved so a slow spell of the shared machine hits both.
- ``rebuild``: `make build` after adding one package to the project's requirements.txt.
- ``image-disk``: all those images with shared layers counted once, against the largest alone.
- ``second-project``: a second project's own images on the same machine, built and stored on
  top of the first's.
"""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import dataclass, field

from bench.measure import Build, build_stack, layers
from bench.table import Row, median, ratio, ratio_text, seconds, size, verdict
from bench.workspace import PROJECT_SERVICES, SECOND_PROJECT_SUFFIX, BenchError, Workspace, log

NAME = "builds"
ROWS = ("cold-build", "rebuild", "image-disk", "second-project")

# The baseline of cold-build, next to this file; built with the repo root as context
BASELINE_DOCKERFILE = "bench/baseline.Dockerfile"

# The stack's one MLflow pin (compiled from images/science/requirements.in by `make lock`): the
# baseline installs the same version
MLFLOW_LOCK = "images/science/requirements.lock"

# A small pure-Python package that no lock of the stack has, added for rebuild
ADDED_PACKAGE = "tabulate"


@dataclass
class BuildResults:
    """The raw numbers; lists hold one value per repetition (seconds unless the name says
    otherwise). Image names are the display names of ``Workspace.images`` (``base`` ...
    ``project bash``)."""

    cold_stack_s: list[float] = field(default_factory=list)
    cold_stack_images_s: list[dict[str, float]] = field(default_factory=list)
    cold_stack_levels: list[list[str]] = field(default_factory=list)
    cold_baseline_s: list[float] = field(default_factory=list)
    mlflow_version: str = ""
    rebuild_s: list[float] = field(default_factory=list)
    rebuild_rebuilt: list[list[str]] = field(default_factory=list)
    build_noop_s: float | None = None
    build_noop_rebuilt: list[str] = field(default_factory=list)
    second_project_s: list[float] = field(default_factory=list)
    second_project_images_s: list[dict[str, float]] = field(default_factory=list)
    second_project_rebuilt: list[list[str]] = field(default_factory=list)
    second_project_levels: list[list[str]] = field(default_factory=list)
    second_project_added_bytes: int | None = None
    second_project_image_bytes: dict[str, int] = field(default_factory=dict)
    second_project_own_bytes: dict[str, int] = field(default_factory=dict)
    image_bytes: dict[str, int] = field(default_factory=dict)
    unique_bytes: int | None = None
    own_bytes: dict[str, int] = field(default_factory=dict)
    biggest_layers: list[tuple[str, int, str]] = field(default_factory=list)


def describe(args: argparse.Namespace, results: BuildResults) -> str:
    """How much was measured, for the results file's settings line."""
    return f"medians of {len(results.cold_stack_s)} cold builds, rebuilds and second-project builds"


def cold_stack_build(ws: Workspace, rep: int) -> Build:
    """cold-build, the stack: every image, the shared ones and the run's project's own, built from
    scratch on a fresh ID of the Debian base (so no layer comes from the cache). The base
    becomes the workspace's for later builds."""
    ws.base_image = ws.fresh_base(f"cold-stack-{rep}")
    return build_stack(ws)


def cold_baseline_build(ws: Workspace, rep: int, mlflow_version: str) -> float:
    """cold-build, the baseline: bench/baseline.Dockerfile built with --no-cache on a fresh ID of
    the Debian base, with the same extra CA certificates (.build/, written by build.sh).

    Returns:
        Seconds; the image is removed again (it is not needed afterwards).
    """
    base = ws.fresh_base(f"cold-baseline-{rep}")
    tag = f"{ws.prefix}/baseline:{rep}"
    args = ["docker", "build", "--no-cache", "--force-rm", "--quiet"]
    args += ["--file", BASELINE_DOCKERFILE, "--tag", tag]
    args += ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"MLFLOW_VERSION={mlflow_version}"]
    seconds, _ = ws.run([*args, "."], timeout=1800)
    ws.record_images(tag)
    ws.client.images.remove(tag, force=True)
    return seconds


def build_with_requirements(ws: Workspace, extra_line: str, project: str | None = None) -> Build:
    """`build_stack` with ``extra_line`` (no newline) appended to the copy's requirements.txt,
    which is restored afterwards (the real project's file is never touched)."""
    requirements = ws.directory / "project" / "requirements.txt"
    original = requirements.read_text()
    requirements.write_text(original + extra_line + "\n")
    try:
        return build_stack(ws, project)
    finally:
        requirements.write_text(original)


def rebuild_after_adding_package(ws: Workspace, rep: int) -> Build:
    """rebuild: add one package to the copy's requirements.txt and rebuild, as `make build`:
    only the project's own images (<project>-jupyter and -bash) should run a step.

    Each repetition's line carries a different comment, so the file changes every time and the
    project images' layers from ``COPY requirements.txt`` on are really rebuilt (as for a user).
    """
    return build_with_requirements(ws, f"{ADDED_PACKAGE}  # added by make bench, repetition {rep}")


def second_project_build(ws: Workspace, rep: int) -> Build:
    """second-project: `make build` of a second project on the same machine (compose project
    ``<project>-2``, the same stack version and prefix) once the first project's images exist.

    Its requirements.txt is the template's plus one comment line naming the repetition, so its
    own layers are built for real (a project's own file, not a copy of the first project's that
    the layer cache would serve); the shared stack images come from the cache.
    """
    line = f"# the second project of make bench, repetition {rep}"
    return build_with_requirements(ws, line, ws.second_project)


def mlflow_version(ws: Workspace) -> str:
    """The stack's MLflow version, the ``mlflow==`` pin of MLFLOW_LOCK in the copy.

    Raises:
        BenchError: the lock pins no mlflow.
    """
    pin = re.search(r"^mlflow==([^\s;]+)", (ws.directory / MLFLOW_LOCK).read_text(), re.M)
    if not pin:
        raise BenchError(f"{MLFLOW_LOCK} pins no mlflow version")
    return pin[1]


def own_bytes(per_image: dict[str, list[tuple[str, int, str]]]) -> dict[str, int]:
    """Per image, the bytes of the layers it adds to the image it is built on: those of its
    layers that no image of ``per_image`` with fewer layers has (image name to its ``layers``;
    base's own bytes include Debian's)."""
    creator: dict[str, str] = {}
    # From the tallest image down, so a layer ends up with the lowest image that has it
    for name, image_layers in sorted(per_image.items(), key=lambda item: -len(item[1])):
        for identity, _, _ in image_layers:
            creator[identity] = name
    return {
        name: sum(nbytes for identity, nbytes, _ in image_layers if creator[identity] == name)
        for name, image_layers in per_image.items()
    }


def disk_usage(ws: Workspace, results: BuildResults) -> None:
    """image-disk: the sizes of every image of the first project (the stack's shared images and
    its own two), their bytes together with shared layers counted once, each image's own bytes
    (see ``own_bytes``) and the biggest layers. second-project, when its images were built:
    the bytes its two images add to those (layers not already present), and per image."""
    refs = ws.images()
    per_image = {name: layers(ws, ref) for name, ref in refs.items()}
    sizes = {identity: nbytes for layers_ in per_image.values() for identity, nbytes, _ in layers_}
    results.image_bytes = {
        name: ws.client.images.get(ref).attrs["Size"] for name, ref in refs.items()
    }
    results.unique_bytes = sum(sizes.values())
    results.own_bytes = own_bytes(per_image)
    seen: dict[str, tuple[str, int, str]] = {}
    for name, image_layers in per_image.items():
        for identity, nbytes, created_by in image_layers:
            if identity not in seen:
                seen[identity] = (name, nbytes, created_by)
    results.biggest_layers = sorted(seen.values(), key=lambda item: -item[1])[:6]

    if not results.second_project_s:
        return
    second_refs = {
        f"second {service}": ws.project_image(service, ws.second_project)
        for service in PROJECT_SERVICES
    }
    second = {name: layers(ws, ref) for name, ref in second_refs.items()}
    added = {
        identity: nbytes
        for image_layers in second.values()
        for identity, nbytes, _ in image_layers
        if identity not in sizes
    }
    results.second_project_added_bytes = sum(added.values())
    results.second_project_image_bytes = {
        name: ws.client.images.get(ref).attrs["Size"] for name, ref in second_refs.items()
    }
    results.second_project_own_bytes = {
        name: sum(nbytes for identity, nbytes, _ in image_layers if identity not in sizes)
        for name, image_layers in second.items()
    }


def run_builds(ws: Workspace, results: BuildResults, reps: int, deadline: float) -> None:
    """cold-build, rebuild and second-project. The cold builds are interleaved (stack,
    baseline, stack, ...) so a slow spell of the shared machine hits both sides; then the
    rebuilds after adding a package, one build with nothing changed, and the second project's
    builds. Afterwards the copy's
    images are the stack and the run's project as committed, on the last fresh base, beside the
    second project's.

    Args:
        reps: the most cold-build pairs (and rebuilds, second-project builds) to run; at least
            one pair always runs.
        deadline: time.perf_counter() value after which no further pair is started when the
            last one's duration says it would end later (a loaded machine keeps the run short).
    """
    results.mlflow_version = mlflow_version(ws)
    for rep in range(reps):
        if (
            rep
            and time.perf_counter() + results.cold_stack_s[-1] + results.cold_baseline_s[-1]
            > deadline
        ):
            log(f"no more cold builds: another pair would overrun the time budget ({rep} done)")
            break
        log(f"cold build of the stack's and the project's images ({rep + 1}/{reps})")
        build = cold_stack_build(ws, rep)
        results.cold_stack_s.append(build.seconds)
        results.cold_stack_images_s.append(build.images_s)
        results.cold_stack_levels = build.levels
        log(f"  {build.seconds:.0f} s; cold build of the one-Dockerfile baseline ({rep + 1})")
        results.cold_baseline_s.append(cold_baseline_build(ws, rep, results.mlflow_version))
        log(f"  {results.cold_baseline_s[-1]:.0f} s")
    for rep in range(len(results.cold_stack_s)):
        log(f"rebuild after adding {ADDED_PACKAGE} to requirements.txt ({rep + 1})")
        build = rebuild_after_adding_package(ws, rep)
        results.rebuild_s.append(build.seconds)
        results.rebuild_rebuilt.append(build.rebuilt)
        log(f"  {build.seconds:.1f} s, rebuilt: {', '.join(build.rebuilt) or 'nothing'}")
    # Back to the committed requirements.txt: the time `make up` adds to a start
    build = build_stack(ws)
    results.build_noop_s, results.build_noop_rebuilt = build.seconds, build.rebuilt
    log(f"build with nothing changed: {build.seconds:.1f} s")
    for rep in range(len(results.cold_stack_s)):
        log(f"build of a second project, {ws.second_project} ({rep + 1})")
        build = second_project_build(ws, rep)
        results.second_project_s.append(build.seconds)
        results.second_project_images_s.append(build.images_s)
        results.second_project_rebuilt.append(build.rebuilt)
        results.second_project_levels = build.levels
        log(f"  {build.seconds:.1f} s, rebuilt: {', '.join(build.rebuilt) or 'nothing'}")


def measure(ws: Workspace, args: argparse.Namespace) -> BuildResults:
    """The cold builds, rebuilds and second-project builds (``args.build_reps`` at most, fewer
    when another pair would end after ``args.deadline``, a time.perf_counter() value), then the
    images' disk use. Afterwards the workspace's images are the stack and the run's project as
    committed, on the last fresh base.

    Raises:
        BenchError: a build failed (the other benchmarks need the images).
    """
    results = BuildResults()
    run_builds(ws, results, args.build_reps, args.deadline)
    disk_usage(ws, results)
    return results


def rows(r: BuildResults) -> list[Row]:
    """The table's rows of this benchmark (ROWS, in that order)."""
    cold, base_cold = median(r.cold_stack_s), median(r.cold_baseline_s)
    q_cold = ratio(cold, base_cold)
    rebuild = median(r.rebuild_s)
    q_rebuild = ratio(rebuild, cold)
    largest = max(r.image_bytes.values()) if r.image_bytes else None
    q_disk = ratio(r.unique_bytes, largest)
    # A second project shares the stack's images: it pays only for its own two. The baseline is
    # what it would cost without sharing, a whole stack of its own: the first project's cold
    # build and all its images' bytes
    second, added = median(r.second_project_s), r.second_project_added_bytes
    q_time, q_added = ratio(second, cold), ratio(added, r.unique_bytes)
    return [
        Row(
            "cold-build",
            "cold build of every image (the stack's and one project's) on top of Debian",
            seconds(cold),
            f"{seconds(base_cold)} (one pip Dockerfile)",
            ratio_text(q_cold),
            "≤ 1.0 × baseline",
            verdict(None if q_cold is None else q_cold <= 1.0),
        ),
        Row(
            "rebuild",
            "rebuild after adding one package to `requirements.txt` (the project's images)",
            seconds(rebuild),
            f"{seconds(cold)} (cold build)",
            ratio_text(q_rebuild),
            "≤ 0.1 × cold build",
            verdict(None if q_rebuild is None else q_rebuild <= 0.1),
        ),
        Row(
            "image-disk",
            "disk: all images (the stack's and one project's), shared layers counted once",
            size(r.unique_bytes),
            f"{size(largest)} (largest image)",
            ratio_text(q_disk),
            "≤ 1.15 × baseline",
            verdict(None if q_disk is None else q_disk <= 1.15),
        ),
        Row(
            "second-project",
            f"a second project on the same machine (`<project>{SECOND_PROJECT_SUFFIX}`): "
            "cold build of its own images / disk they add",
            f"{seconds(second)} / {size(added)}",
            f"{seconds(cold)} / {size(r.unique_bytes)} (first project: cold build / all images)",
            "—" if q_time is None or q_added is None else f"{q_time:.2f} / {q_added:.2f}",
            "≤ 0.2 × baseline, both",
            verdict(None if q_time is None or q_added is None else max(q_time, q_added) <= 0.2),
        ),
    ]


def details(r: BuildResults) -> list[str]:
    """Where the builds' time and the images' bytes go, as the results file's list items."""
    items = []
    if r.cold_stack_images_s:
        parts = build_levels(r.cold_stack_levels, r.cold_stack_images_s)
        cold = median(r.cold_stack_s)
        rest = cold - level_seconds(r.cold_stack_levels, r.cold_stack_images_s)
        items.append(
            f"`cold-build` per image (make build, in order; [side by side]): {parts}; "
            f"the rest of the {seconds(cold)} (Debian base check, CA certificates, between "
            f"levels) {seconds(rest)}"
        )
    if r.mlflow_version:
        items.append(
            f"`cold-build` baseline: bench/baseline.Dockerfile, `pip install` of "
            f"mlflow=={r.mlflow_version} (from {MLFLOW_LOCK}), JupyterLab and the science set "
            "in one layer"
        )
    if r.rebuild_rebuilt:
        rebuilt = sorted({", ".join(names) or "nothing" for names in r.rebuild_rebuilt})
        items.append(
            f"`rebuild`: images with a step not from the cache after adding `{ADDED_PACKAGE}`: "
            f"{'; '.join(rebuilt)} (runs: {', '.join(f'{v:.1f}' for v in r.rebuild_s)} s)"
        )
    if r.build_noop_s is not None:
        items.append(
            f"`rebuild`: `make build` with nothing changed: {seconds(r.build_noop_s)} "
            f"(images with a step not from the cache: "
            f"{', '.join(r.build_noop_rebuilt) or 'none'})"
        )
    if r.image_bytes:
        parts = ", ".join(
            f"{name} {size(r.image_bytes[name])} ({size(r.own_bytes[name])} its own)"
            for name in r.image_bytes
        )
        items.append(
            f"`image-disk`: image sizes (and the bytes of the layers each adds to the image it "
            f"is built on; base: Debian included): {parts}"
        )
        parts = "; ".join(
            f"{size(nbytes)} {name}: `{_short(created_by)}`"
            for name, nbytes, created_by in r.biggest_layers
        )
        items.append(f"`image-disk`: biggest layers: {parts}")
    if r.second_project_images_s:
        parts = build_levels(r.second_project_levels, r.second_project_images_s)
        rebuilt = sorted({", ".join(names) or "nothing" for names in r.second_project_rebuilt})
        items.append(
            f"`second-project`: its `make build` per image ([side by side]): {parts}; images "
            f"with a step not from the cache: {'; '.join(rebuilt)} "
            f"(runs: {', '.join(f'{v:.1f}' for v in r.second_project_s)} s)"
        )
    if r.second_project_image_bytes:
        parts = ", ".join(
            f"{name} {size(r.second_project_image_bytes[name])} "
            f"({size(r.second_project_own_bytes[name])} not already present)"
            for name in r.second_project_image_bytes
        )
        items.append(
            f"`second-project`: its images: {parts}; added to the first project's "
            f"{size(r.unique_bytes)}: {size(r.second_project_added_bytes)}; its requirements.txt "
            "is the template's plus a comment line, so its own layers are built, not taken from "
            "the first project's cache"
        )
    return items


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
