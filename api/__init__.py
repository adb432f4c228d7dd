"""HTTP API: the job resource and its 202/Location contract.

`blueprint` carries every route; importing the resource modules registers them on it.
"""

from api import access_log, batch, compat, dead_letters, events, health, jobs, openapi, stats, uploads, web
from api.app import blueprint

access_log.install()

__all__ = [
    "batch",
    "blueprint",
    "compat",
    "dead_letters",
    "events",
    "health",
    "jobs",
    "openapi",
    "stats",
    "uploads",
    "web",
]
