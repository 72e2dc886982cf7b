"""The host side runs where users are (macOS as shipped: bash 3.2, BSD tools, GNU make 3.81,
python3 3.9; Linux; WSL 2): Python of the standard library for Python >= 3.9, a Makefile of
make 3.81 with POSIX sh recipes, and no bash script but provision.sh (Debian machines, CI)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, run

BIN = Path(sys.executable).parent
HOST_PACKAGE = REPO_ROOT / "scripts" / "stackctl"
HOST_PYTHON = sorted(HOST_PACKAGE.rglob("*.py"))
MAKEFILE = REPO_ROOT / "Makefile"

# GNU make features newer than 3.81 (macOS's make), each with the version that brought it
NEWER_MAKE = {
    r"^\.ONESHELL\s*:": ".ONESHELL (3.82)",
    r"^\.RECIPEPREFIX\b": ".RECIPEPREFIX (3.82)",
    r"^\.SHELLFLAGS\b": ".SHELLFLAGS (3.82)",
    r"^\s*undefine\b": "undefine (3.82)",
    r"^\s*private\s": "private variables (3.82)",
    r"\$\(file\s": "$(file ...) (4.0)",
    r"^[^\t#=]*[^:!?+]!=": "!= shell assignment (4.0)",
    r":::?=": "::= / :::= assignment (4.0, 4.4)",
    r"&:": "grouped targets &: (4.3)",
    r"\$\(let\s": "$(let ...) (4.4)",
    r"\$\(intcmp\s": "$(intcmp ...) (4.4)",
    r"\$\(guile\s": "$(guile ...) (4.0)",
    r"^\.EXTRA_PREREQS\b": ".EXTRA_PREREQS (4.3)",
    r"^\s*load\s": "load (4.0)",
}
# What /bin/sh (dash, a Mac's sh in POSIX mode) does not take in a recipe
BASHISMS = {
    r"\[\[": "[[ ... ]]",
    r"\$'": "$'...' quoting",
    r"<<<": "here-strings",
    r"(^|[;&|]\s*)(source|function)\s": "source / function",
    r"\$\{[A-Za-z_]+//": "${var//...} substitution",
    r"&>": "&> redirection",
    r"pipefail": "set -o pipefail",
    r"\bdeclare\b|\bmapfile\b|\breadarray\b": "declare / mapfile",
}


def newer_make_features(text: str) -> list[str]:
    """The GNU make features newer than 3.81 used in a Makefile's text, as ``line: feature``."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("\t") or line.lstrip().startswith("#"):
            continue
        found += [f"{number}: {what}" for rule, what in NEWER_MAKE.items() if re.search(rule, line)]
    return found


def bashisms(text: str) -> list[str]:
    """The recipe lines of a Makefile's text that need more than POSIX sh."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("\t"):
            found += [
                f"{number}: {what}" for rule, what in BASHISMS.items() if re.search(rule, line)
            ]
    return found


def test_the_makefile_needs_nothing_newer_than_gnu_make_3_81():
    assert newer_make_features(MAKEFILE.read_text()) == []


@pytest.mark.parametrize(
    "line, feature",
    [
        (".ONESHELL:", ".ONESHELL"),
        ("X != date", "!= shell assignment"),
        ("X ::= 1", "::= / :::= assignment"),
        ("a b &: c", "grouped targets"),
        ("undefine X", "undefine"),
        (".RECIPEPREFIX = >", ".RECIPEPREFIX"),
        ("$(file >out,text)", "$(file ...)"),
        ("X := $(let a,1,$(a))", "$(let ...)"),
    ],
)
def test_the_make_check_rejects_each_newer_feature(line, feature):
    assert feature in " ".join(newer_make_features(line + "\n"))


def test_the_makefile_runs_its_recipes_with_posix_sh():
    text = MAKEFILE.read_text()
    assert re.search(r"^SHELL := /bin/sh$", text, re.M), "the recipes' shell must be /bin/sh"
    assert bashisms(text) == []
    assert bashisms("x:\n\t@[[ -f a ]] && source b\n") == ["2: [[ ... ]]", "2: source / function"]


def test_no_host_side_file_is_a_shell_script_but_provision():
    scripts = [
        path.relative_to(REPO_ROOT).as_posix()
        for path in (REPO_ROOT / "scripts").rglob("*")
        if path.is_file()
        and (path.suffix in (".sh", ".bash") or path.read_bytes()[:2] == b"#!")
        and "sh" in path.read_bytes().split(b"\n", 1)[0].decode(errors="replace") + path.suffix
    ]
    assert scripts == ["scripts/provision.sh"]


def test_every_host_side_python_file_runs_on_python_3_9():
    result = run(
        [
            str(BIN / "vermin"),
            "--no-tips",
            "--violations",
            "--eval-annotations",
            "-t=3.9-",
            *map(str, HOST_PYTHON),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_python_version_check_fails_on_newer_syntax(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text("def f(x):\n    match x:\n        case 1:\n            return 1\n")
    result = run([str(BIN / "vermin"), "--no-tips", "--violations", "-t=3.9-", str(newer)])
    assert result.returncode != 0


def imported_modules(path: Path) -> set[str]:
    """The top-level modules a Python file imports (relative imports left out)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


@pytest.mark.parametrize("path", HOST_PYTHON, ids=lambda p: p.name)
def test_host_side_python_imports_only_the_standard_library(path: Path):
    outside = imported_modules(path) - set(sys.stdlib_module_names) - {"__future__", "stackctl"}
    assert outside == set(), f"{path.name} imports {outside}: the host has python3 alone"
