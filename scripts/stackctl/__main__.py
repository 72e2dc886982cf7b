"""Runs the stack's host commands: ``python3 scripts/stackctl <command> ...`` (the Makefile's
recipes call it so). The folder is put on the path so the package imports as ``stackctl``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stackctl.cli import main  # noqa: E402 (the path above first)

sys.exit(main(sys.argv[1:]))
