"""Ray backend for synapse_steps: the same steps, each run as a Ray task.

Importing this package imports ``ray``; nothing here calls ``ray.init`` at import.
"""

from ray_backend.executor import RayExecutor, StepTaskFailed
from ray_backend.orchestrator import RayOrchestrator

__all__ = ["RayExecutor", "RayOrchestrator", "StepTaskFailed"]
