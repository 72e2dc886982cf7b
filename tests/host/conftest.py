"""The host package's unit tests: scripts/stackctl's logic without Docker, in seconds."""

import sys

from tests.helpers import REPO_ROOT

# The package imports as ``stackctl``, as make's ``python3 scripts/stackctl`` runs it
sys.path.insert(0, str(REPO_ROOT / "scripts"))
