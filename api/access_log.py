"""Keep query strings out of the HTTP streams web server's access log.

With HTTP streams the worker runs uvicorn, whose access log line carries the request target with its
query string: a function key sent as `?code=` and continuation tokens would land in the logs the host
collects from the worker. The filter keeps the path only.
"""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"


class PathOnly(logging.Filter):
    """Rewrite uvicorn's access record (client, method, target, HTTP version, status) to drop the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record; strip the query from its target."""
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            client, method, target, version, status = args
            record.args = (client, method, str(target).split("?", 1)[0], version, status)
        return True


def install() -> None:
    """Add the filter once (uvicorn's logging config keeps a logger's filters when it configures it)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, PathOnly) for f in logger.filters):
        logger.addFilter(PathOnly())
