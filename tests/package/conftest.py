"""The stack's package (images/project/mlstack) imported from its source on the host: its
parsing and decisions without Docker, in seconds."""

import sys

from tests.helpers import REPO_ROOT

# As the project's images install it, minus the install: the source tree on the path
sys.path.insert(0, str(REPO_ROOT / "images" / "project" / "mlstack" / "src"))
