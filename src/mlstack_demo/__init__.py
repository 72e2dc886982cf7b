"""The project's own code: the data (:mod:`.data`), the model (:mod:`.model`) and the MLflow
plumbing every entry point and notebook shares (:mod:`.tracking`).

The containers have ``src/`` on their Python path (compose.yaml), so ``import mlstack_demo``
works in Jupyter and the runner without installing anything. ``make init NAME=...`` renames
this package after the project.
"""
