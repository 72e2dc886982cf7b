"""Jupyter Server settings of the stack's JupyterLab (found in sys.prefix/etc/jupyter)."""

from pathlib import Path

c = get_config()  # noqa: F821 -- defined by Jupyter when it loads this file

# No calls home: no news feed and no update check from JupyterLab
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"


def container_memory_limit() -> int | None:
    """The container's memory limit in bytes (compose's mem_limit, MLSTACK_MEMORY_LIMIT), read
    from the cgroup (v2, then v1); None when the container has none."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        # v2 says "max"; v1 says a huge number (the page-rounded 2**63) when unlimited
        if text.isdigit() and int(text) < 2**60:
            return int(text)
        return None
    return None


# jupyter-resource-usage shows the kernel's memory against this limit in the status bar
if (limit := container_memory_limit()) is not None:
    c.ResourceUseDisplay.mem_limit = limit
