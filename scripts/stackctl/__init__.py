"""The stack's host side: what make runs on the user's machine (macOS, Linux, WSL 2) before and
around Docker. Standard library only, Python >= 3.9: it runs on what a Mac ships. One module per
concern (``envfile``: .env, ``ports``, ``modes``: compose files, ``images``: the build), the
commands in ``cli``; unit tests in tests/host need no Docker."""
