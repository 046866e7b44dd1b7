"""Prefect blocks of the work-clusters collection.

Registered with ``prefect block register -m blocks`` and through the ``prefect.collections``
entry point (a Prefect server started in this environment registers them by itself).
"""

from prefect_work_clusters.blocks.agent import AgentBlock

__all__ = ["AgentBlock"]
