"""The project's own side: ``make init NAME=...`` (a new project from this one: its compose
project, images and package named) and ``make upgrade-check REF=...`` (a newer stack version
touches none of the project's files)."""

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
from stackctl.proc import ROOT, Failure, output, run, say

RULE = "lowercase letters, digits and dashes, starting and ending with a letter or digit"
# Valid as a compose project name and as a Docker image name component alike
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# The files whose text init renames the package in
RENAMED = (".py", ".ipynb", ".md", ".ini", ".toml", ".cfg")


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
    """The project's own README, made once by init in place of the stack's front page."""
    return f"""# {name}

A project on [mlstack](docs/index.md): JupyterLab, a runner for jobs and an MLflow tracking
server, started with `make up`.

## Quick start

```console
$ make up
$ docker compose run --rm bash python train.py
```

- Your code: `src/{package}/`, the entry points (`train.py`, ...), `notebooks/`; your tests:
  `project_tests/` (`make check`).
- The stack's manual: [docs/](docs/index.md) (`make docs` serves it).
"""


def _stack_has_containers() -> bool:
    if not shutil.which("docker") or output(["docker", "info"]) is None:
        return False
    listed = output(["docker", "compose", "--profile", "*", "ps", "--all", "--quiet"])
    return bool(listed)


def init(argv: Sequence[str] = ()) -> None:
    """Name this clone's compose project NAME (.env), so its containers, network, volume and
    own images are the project's; rename its package and every import of it; give it its own
    README.

    Raises:
        Failure: a bad name (status 2), src/ with several packages, or the old name's stack
            still has containers.
    """
    from stackctl import cli

    name = argv[0] if argv else ""
    package = package_for(name)
    found = packages(ROOT / "src")
    if len(found) > 1 and not (ROOT / "src" / package).is_dir():
        raise Failure(
            f"src/ holds {len(found)} packages ({' '.join(found)}); make init renames only one, "
            "so rename yours by hand"
        )
    env = EnvFile.load()
    old_name = env.get("COMPOSE_PROJECT_NAME")
    # A stack still running under the old name would be orphaned by the rename
    if env.path.exists() and old_name and old_name != name and _stack_has_containers():
        raise Failure(
            f"the stack of project '{old_name}' still has containers; run 'make down' first, "
            f"then 'make init NAME={name}'"
        )
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
    old = found[0][len("src/") :] if found else ""
    if old and old != package:
        (ROOT / "src" / old).rename(ROOT / "src" / package)
        for path in envfile.project_files():
            _rename_tree(ROOT / path, old, package)
        say(
            f"init: package src/{package} (was src/{old}), its imports renamed; commit the "
            "change"
        )
    readme_path = ROOT / "README.md"
    first = readme_path.read_text().splitlines()[:1] if readme_path.exists() else []
    if first == ["# mlstack"]:
        readme_path.write_text(readme(name, package))
        say("init: README.md is now the project's own (the stack's manual is in docs/)")
    # Kept by the merges of newer stack versions: git's "ours" merge for README.md
    if output(["git", "rev-parse", "--git-dir"]) is not None:
        run(["git", "config", "merge.ours.driver", "true"])
        attributes = Path(output(["git", "rev-parse", "--git-path", "info/attributes"]) or "")
        attributes = attributes if attributes.is_absolute() else ROOT / attributes
        attributes.parent.mkdir(parents=True, exist_ok=True)
        lines = attributes.read_text().splitlines() if attributes.exists() else []
        if "README.md merge=ours" not in lines:
            with open(attributes, "a") as file:
                file.write("README.md merge=ours\n")
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
    """Check that stack version REF changes none of the project's files since the stack version
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
    mine = touched(changed, envfile.project_files())
    if mine:
        raise Failure(
            f"{ref} changes {len(mine)} of the project's files ({' '.join(mine)}); merging it may "
            "overwrite or conflict with your work there: merge by hand and keep your version"
        )
    say(
        f"upgrade-check: {ref} changes {len(changed)} stack files and none of the project's; "
        f"take it with 'git merge {ref}'"
    )
