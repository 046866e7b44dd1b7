"""prefect-work-clusters: one coding agent per semantic cluster, each in its own git worktree,
then an integration that loses nothing; as Prefect 3 tasks and flows.

The repository keeps the pattern's top-level folders (``flows/``, ``tasks/``, ``blocks/``,
``deployments/``); this package holds them as symlinks, so that they install, import and
type-check under this one name and never as bare top-level ``flows`` or ``tasks``.

>>> from prefect_work_clusters.flows.work_clusters import work_clusters
"""

__version__ = "0.2.0"
