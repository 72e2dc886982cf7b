"""Runs inside an image: every package its lock files pin is installed at the pinned version
and its top-level modules import. Usage: python -c "$(cat this file)" LOCK [LOCK...]"""

import importlib
import importlib.metadata as metadata
import sys
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # base has no packaging of its own, but pip vendors it
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

# Modules that need an extra the locks do not install: black's HTTP server (black[d])
NEEDS_AN_EXTRA = {"blackd"}

modules_of: dict[str, list[str]] = {}
for module, distributions in metadata.packages_distributions().items():
    for distribution in distributions:
        modules_of.setdefault(canonicalize_name(distribution), []).append(module)

problems = []
checked = 0
for lock in sys.argv[1:]:
    for line in Path(lock).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate():
            continue  # for another platform or Python
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{requirement.name}: not installed")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}: {version} installed, lock says {line}")
        for module in modules_of.get(canonicalize_name(requirement.name), []):
            if module.startswith("_") or not module.isidentifier() or module in NEEDS_AN_EXTRA:
                continue  # private helpers and data-only top-level names
            try:
                importlib.import_module(module)
            except Exception as error:  # any failure to import is what this check reports
                problems.append(f"{requirement.name}: import {module}: {error!r}")
        checked += 1

print(f"{checked} packages checked")
print("\n".join(problems))
sys.exit(1 if problems or not checked else 0)
