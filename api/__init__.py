"""HTTP API: the job resource and its 202/Location contract.

`blueprint` carries every route; importing the resource modules registers them on it.
"""

from api import batch, dead_letters, health, jobs, openapi, uploads
from api.app import blueprint

__all__ = ["batch", "blueprint", "dead_letters", "health", "jobs", "openapi", "uploads"]
