"""The project's own side: ``make init NAME=...`` (a new project from this one: its compose
project, images, package and experiment named), ``make upgrade-check REF=...`` (a newer stack
version touches nothing under ``project/``) and ``make move-project`` (a project laid out before
the project folder moves into it)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from pathlib import Path
from typing import List, Sequence

from stackctl import envfile
from stackctl.envfile import EnvFile
from stackctl.proc import PROJECT, ROOT, Failure, output, run, say

RULE = "lowercase letters, digits and dashes, starting and ending with a letter or digit"
# Valid as a compose project name and as a Docker image name component alike
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# The files whose text init renames the package in
RENAMED = (".py", ".ipynb", ".md", ".ini", ".toml", ".cfg")
# The template's demo project (project/): its title, experiment and package's source of names
TEMPLATE = "mlstack-demo"
# The project's folder, the one thing a stack upgrade never touches
OWNED = ("project",)


def package_for(name: str) -> str:
    """The Python package of a project name (dashes become underscores).

    Raises:
        Failure: no name, an invalid one, or one whose package would start with a digit
            (status 2), each with the rule and an example.
    """
    if not name:
        raise Failure(f"no project name given; run 'make init NAME=<name>' ({RULE})", status=2)
    if not _NAME.match(name):
        raise Failure(
            f"'{name}' is not a valid project name; use {RULE}, for example 'churn-model'",
            status=2,
        )
    if name[0].isdigit():
        raise Failure(
            f"'{name}' starts with a digit, which the name of its Python package cannot; start "
            f"it with a letter, for example 'p{name}'",
            status=2,
        )
    return name.replace("-", "_")


def packages(src: Path) -> List[str]:
    """The packages under ``src`` (folders with an __init__.py), as ``src/<name>``, sorted."""
    if not src.is_dir():
        return []
    return sorted(f"src/{each.name}" for each in src.iterdir() if (each / "__init__.py").is_file())


def rename_in(text: str, old: str, new: str) -> str:
    """``text`` with every whole-word ``old`` replaced by ``new``."""
    return re.sub(rf"\b{re.escape(old)}\b", new, text)


def readme(name: str, package: str) -> str:
    """The project's own README (``project/README.md``), made once by init in place of the
    template's demo's."""
    return f"""# {name}

A project on [mlstack](../README.md): JupyterLab, a runner for jobs and an MLflow tracking
server, started with `make up` from the repository's root. This folder is the project's; a stack
upgrade never changes it.

## Quick start (from the repository's root)

```console
$ make up
$ docker compose run --rm bash python train.py
```

- Your code: `src/{package}/`, the entry points (`train.py`, ...), `notebooks/`; your tests:
  `tests/` (`make check`); your settings: `project.env`.
- The stack's manual: [docs/](../docs/index.md) (`make docs` serves it).
"""


def _stack_has_containers() -> bool:
    if not shutil.which("docker") or output(["docker", "info"]) is None:
        return False
    listed = output(["docker", "compose", "--profile", "*", "ps", "--all", "--quiet"])
    return bool(listed)


def _set_line(path: Path, key: str, value: str) -> None:
    """Set ``key=value`` in the settings file ``path`` in place (comments and order kept)."""
    lines = path.read_text().splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith(f"{key}="):
            lines[index] = f"{key}={value}\n"
            break
    else:
        lines.append(f"{key}={value}\n")
    path.write_text("".join(lines))


def generate(folder: Path, name: str) -> List[str]:
    """Make the project folder ``folder`` (``project/``, the template's demo or a project made
    from it) the project NAME: its one package under ``src/`` renamed NAME's package, with every
    import of it in the folder; the demo's experiment and README replaced by NAME's. The same
    code makes the stack's test projects.

    Returns:
        The lines to tell the user, one per change (none when ``folder`` already is NAME's).

    Raises:
        Failure: a bad name (status 2), or ``src/`` with several packages.
    """
    package = package_for(name)
    found = packages(folder / "src")
    if len(found) > 1 and not (folder / "src" / package).is_dir():
        raise Failure(
            f"project/src/ holds {len(found)} packages ({' '.join(found)}); make init renames "
            "only one, so rename yours by hand"
        )
    said: List[str] = []
    old = found[0][len("src/") :] if found else ""
    if old and old != package:
        (folder / "src" / old).rename(folder / "src" / package)
        _rename_tree(folder, old, package)
        said.append(f"package project/src/{package} (was project/src/{old}), its imports renamed")
    # The names init gave before (the template's, or the project's last name): a name the user
    # chose instead is theirs to keep
    given = {TEMPLATE, old.replace("_", "-")} - {name}
    settings = folder / "project.env"
    text = settings.read_text() if settings.is_file() else ""
    if any(f"MLFLOW_EXPERIMENT_NAME={each}\n" in text for each in given):
        _set_line(settings, "MLFLOW_EXPERIMENT_NAME", name)
        said.append(f"experiment '{name}' (project/project.env's MLFLOW_EXPERIMENT_NAME)")
    readme_path = folder / "README.md"
    first = readme_path.read_text().splitlines()[:1] if readme_path.exists() else []
    if first == [f"# {TEMPLATE}"]:
        readme_path.write_text(readme(name, package))
        said.append("project/README.md is now the project's own")
    elif first and first[0][2:] in given:
        # The project's own README: only its title is init's
        lines = readme_path.read_text().splitlines(keepends=True)
        readme_path.write_text("".join([f"# {name}\n", *lines[1:]]))
        said.append(f"project/README.md's title is now '{name}'")
    return said


def init(argv: Sequence[str] = ()) -> None:
    """Name this clone's compose project NAME (.env), so its containers, network, volume and
    own images are the project's; make the project folder NAME's (:func:`generate`).

    Raises:
        Failure: a bad name (status 2), project/src/ with several packages, or the old name's
            stack still has containers.
    """
    from stackctl import cli

    name = argv[0] if argv else ""
    package_for(name)
    if not (PROJECT / "project.env").is_file():
        raise Failure(
            "there is no project/project.env: this project has the layout of before mlstack "
            "0.2; move it first as docs/operations.md says (make move-project)"
        )
    env = EnvFile.load()
    old_name = env.get("COMPOSE_PROJECT_NAME")
    # A stack still running under the old name would be orphaned by the rename
    if env.path.exists() and old_name and old_name != name and _stack_has_containers():
        raise Failure(
            f"the stack of project '{old_name}' still has containers; run 'make down' first, "
            f"then 'make init NAME={name}'"
        )
    said = generate(PROJECT, name)
    if env.path.exists():
        env.set("COMPOSE_PROJECT_NAME", name)
        env.save()
    given = os.environ.get("COMPOSE_PROJECT_NAME")
    os.environ["COMPOSE_PROJECT_NAME"] = name
    try:
        # Creates .env when missing (with this name); its port lines are not init's to say
        with contextlib.redirect_stdout(io.StringIO()):
            cli.env_command([])
    finally:
        if given is None:
            del os.environ["COMPOSE_PROJECT_NAME"]
        else:
            os.environ["COMPOSE_PROJECT_NAME"] = given
    settings = envfile.image_settings()
    version, prefix = settings["MLSTACK_VERSION"], settings["MLSTACK_IMAGE_PREFIX"]
    say(
        f"init: project '{name}': compose project {name}, images {name}-jupyter and "
        f"{name}-bash:{version} on the stack's {prefix}/* images"
    )
    for line in said:
        say(f"init: {line}")
    if said:
        say("init: commit the change (git add project && git commit)")
    say("init: next, 'make up'")
    if given and given != name:
        say(
            f"warning: COMPOSE_PROJECT_NAME={given} in your environment overrides .env; unset "
            "it",
            err=True,
        )


def _rename_tree(path: Path, old: str, new: str) -> None:
    files = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
    for each in files:
        if not each.is_file() or each.suffix not in RENAMED:
            continue
        # The project's data, logs and the stack's runtime files are not its code
        if each.relative_to(path).parts[0] in ("data", "logs", ".mlstack"):
            continue
        try:
            text = each.read_text()
        except UnicodeDecodeError:
            continue
        renamed = rename_in(text, old, new)
        if renamed != text:
            each.write_text(renamed)


def touched(changed: Sequence[str], owned: Sequence[str]) -> List[str]:
    """The changed paths that are the project's: equal to an owned path or under an owned
    folder."""
    return [
        path
        for path in changed
        if any(path == mine or path.startswith(mine + "/") for mine in owned)
    ]


def upgrade_check(argv: Sequence[str] = ()) -> None:
    """Check that stack version REF changes nothing under ``project/`` since the stack version
    this project last merged, so `git merge REF` cannot conflict with the project's work.

    Raises:
        Failure: no REF, not a commit, no shared history, or the project's files it changes.
    """
    ref = argv[0] if argv else ""
    if not ref:
        raise Failure(
            "say which stack version to check: make upgrade-check REF=<tag>, after 'git fetch "
            "mlstack --tags' (see docs/operations.md)"
        )
    if output(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"]) is None:
        raise Failure(
            f"'{ref}' is not a commit of this repository; run 'git fetch mlstack --tags' first "
            "(see docs/operations.md)"
        )
    base = output(["git", "merge-base", "HEAD", ref])
    if base is None:
        raise Failure(
            f"'{ref}' shares no history with this project; take stack versions from the "
            "repository it was made from"
        )
    changed = (output(["git", "diff", "--name-only", base, ref]) or "").splitlines()
    mine = touched(changed, OWNED)
    if mine:
        raise Failure(
            f"{ref} changes {len(mine)} files under project/ ({' '.join(mine)}); merging it may "
            "overwrite or conflict with your work there: merge by hand and keep your version"
        )
    say(
        f"upgrade-check: {ref} changes {len(changed)} stack files and nothing under project/; "
        f"take it with 'git merge {ref}'"
    )


# A project laid out before mlstack 0.2 had its files at the repository's root, listed in
# project-files.txt (these by default); make move-project puts each under project/, renamed
# where the new layout names it otherwise
OLD_LAYOUT = (
    "src",
    "train.py",
    "predict.py",
    "evaluate.py",
    "sweep.py",
    "monitor.py",
    "notebooks",
    "project_tests",
    "data",
    "requirements.txt",
    "wheels",
    "env/project.env",
)
RENAMED_IN_MOVE = {"project_tests": "tests", "env/project.env": "project.env"}
# Not listed but the project's: its job logs and, once init made it the project's, its README
ALSO_MOVED = ("logs",)


def old_layout_paths(root: Path) -> List[str]:
    """The project's paths of a repository laid out before the project folder, relative to
    ``root``: project-files.txt's lines (a folder's without its slash) when the file exists,
    else :data:`OLD_LAYOUT`; only those that exist."""
    listed = root / "project-files.txt"
    if listed.is_file():
        lines = listed.read_text().splitlines()
        paths = [line.strip().rstrip("/") for line in lines if line.strip()[:1] not in ("", "#")]
    else:
        paths = list(OLD_LAYOUT)
    paths += [extra for extra in ALSO_MOVED if extra not in paths]
    return [path for path in paths if (root / path).exists() or (root / path).is_symlink()]


def moved_to(path: str) -> str:
    """Where make move-project puts the old layout's ``path``, relative to the repository."""
    return "project/" + RENAMED_IN_MOVE.get(path, path)


def _git(*args: str) -> str:
    """git's output in the repository; raises Failure with git's own message on failure."""
    import subprocess

    done = subprocess.run(["git", *args], cwd=str(ROOT), capture_output=True, text=True)
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise Failure(f"git {args[0]}: {message}")
    return done.stdout


def move_project(argv: Sequence[str] = ()) -> None:
    """Upgrade a project laid out before the project folder to stack version REF: move its files
    (tracked or not, data included, byte for byte) into ``project/`` and commit that, then merge
    REF taking the stack's files from REF and ``project/`` from the project. The MLflow data
    (a Docker volume) is not touched.

    Raises:
        Failure: no REF, REF not a commit with the project folder, uncommitted changes, stack
            files the project changed (merge those by hand), or a path already taken under
            project/; each before anything moved.
    """
    ref = argv[0] if argv else ""
    paths = old_layout_paths(ROOT)
    readme_path = ROOT / "README.md"
    own_readme = readme_path.is_file() and not readme_path.read_text().startswith("# mlstack\n")
    if (PROJECT / "project.env").is_file() and not (ROOT / "project-files.txt").exists():
        say("move-project: the project already is in project/; nothing to move")
        return
    if not ref:
        raise Failure(
            "say which stack version to move to: make move-project REF=<tag>, after 'git fetch "
            "mlstack --tags' (see docs/operations.md)",
            status=2,
        )
    if output(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"]) is None:
        raise Failure(f"'{ref}' is not a commit; run 'git fetch mlstack --tags' first")
    if output(["git", "cat-file", "-e", f"{ref}:project/project.env"]) is None:
        raise Failure(f"{ref} has no project/project.env; move to a stack version of 0.2 or later")
    if _git("status", "--porcelain", "--untracked-files=no", "--", *paths, "README.md").strip():
        raise Failure("the project's files have uncommitted changes; commit them first")
    base = _git("merge-base", "HEAD", ref).strip()
    mine = set(paths) | {"README.md", "project-files.txt", ".gitignore", "pyproject.toml"}
    changed = _git("diff", "--name-only", base, "HEAD").splitlines()
    edited = [path for path in changed if not touched([path], sorted(mine))]
    if edited:
        raise Failure(
            f"this project changed {len(edited)} of the stack's files ({' '.join(edited[:5])}); "
            f"merge {ref} by hand (git merge {ref}) and keep your versions there"
        )
    taken = [moved_to(path) for path in paths if (ROOT / moved_to(path)).exists()]
    if own_readme and (PROJECT / "README.md").exists():
        taken.append("project/README.md")
    if taken:
        raise Failure(f"{' '.join(taken)} already exist; move those out of project/ first")

    PROJECT.mkdir(exist_ok=True)
    for path in paths:
        target = ROOT / moved_to(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        (ROOT / path).rename(target)
        say(f"move-project: {path} -> {moved_to(path)}")
    if own_readme:
        readme_path.rename(PROJECT / "README.md")
        say("move-project: README.md -> project/README.md (the stack's front page comes back)")
    # The project's own settings files of the new layout, as REF ships them, where missing
    for name in ("pyproject.toml", ".gitignore", "README.md"):
        if not (PROJECT / name).exists():
            (PROJECT / name).write_text(_git("show", f"{ref}:project/{name}"))
    moved = paths + (["README.md"] if own_readme else [])
    _git("rm", "-r", "--cached", "--quiet", "--ignore-unmatch", "--", *moved)
    _git("add", "--all", "--", "project")
    _git("commit", "--quiet", "-m", "Move the project into project/ (make move-project)")
    # The merge: the stack's files exactly as REF has them, project/ as this project has it
    _git("merge", "--quiet", "--no-ff", "--no-commit", "-s", "ours", ref)
    _git("checkout", ref, "--", ".", ":(exclude)project")
    ours = set(_git("ls-tree", "-r", "--name-only", "HEAD").splitlines())
    theirs = set(_git("ls-tree", "-r", "--name-only", ref).splitlines())
    gone = sorted(path for path in ours - theirs if not path.startswith("project/"))
    if gone:
        _git("rm", "--quiet", "--", *gone)
    _git("commit", "--quiet", "-m", f"Merge stack version {ref} (make move-project)")
    say(f"move-project: merged {ref}; the project is in project/; next, 'make up'")
