"""HTTP API: the job resource and its 202/Location contract."""

import azure.durable_functions as df
import azure.functions as func

blueprint = df.Blueprint()


@blueprint.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness and storage readiness (extended by the job API)."""
    import json

    from azure.core.exceptions import AzureError

    from shared.settings import get_settings
    from shared.storage import async_blob_service

    try:
        async with async_blob_service(get_settings()) as blobs:
            await blobs.get_service_properties()
        body, code = {"status": "ok", "storage": "ok"}, 200
    except AzureError as exc:
        body, code = {"status": "unavailable", "storage": type(exc).__name__}, 503
    return func.HttpResponse(json.dumps(body), status_code=code, mimetype="application/json")
