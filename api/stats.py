"""Job statistics for the dashboard's charts: GET /api/stats?hours=&bucket_minutes= (jobs.stats)."""

from __future__ import annotations

from azurefunctions.extensions.http.fastapi import Request, Response

from api.app import blueprint
from api.http import ROUTE_METHODS, dispatch, is_decimal, json_response, query_params
from jobs import stats
from shared.settings import get_settings
from storage.clients import storage_clients

DEFAULT_HOURS = 3
DEFAULT_BUCKET_MINUTES = 5


def _int_param(value: str | None, default: int) -> int:
    """The parameter as an integer; anything not decimal becomes 0, which check_window refuses with 422."""
    if value is None:
        return default
    return int(value) if is_decimal(value) and len(value) <= 6 else 0


@blueprint.route(route="stats", methods=ROUTE_METHODS)
async def job_statistics(req: Request) -> Response:
    """GET: jobs created in the last hours, bucketed: counts by outcome, durations and failure rate."""

    async def answer() -> Response:
        params = query_params(req)
        window = stats.check_window(
            _int_param(params.get("hours"), DEFAULT_HOURS),
            _int_param(params.get("bucket_minutes"), DEFAULT_BUCKET_MINUTES),
        )
        clients = await storage_clients(get_settings())
        return json_response(await stats.job_stats(clients, window))

    return await dispatch(req, {"GET": answer})
