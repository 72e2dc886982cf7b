"""The project's own code: the data (:mod:`.data`) and the model (:mod:`.model`). The stack's
plumbing (settings, runs, the job command, Dask) is the stack's package ``mlstack``, installed in
its images.

The containers have ``src/`` on their Python path (compose.yaml), so ``import mlstack_demo``
works in Jupyter and the runner without installing anything. ``make init NAME=...`` renames
this package after the project.
"""
