"""HTTP as the Functions host delivers it to a Python function (issue #9, item 3).

Sources (Azure/azure-functions-host): `WebScriptHostHttpRoutesManager.InitializeHttpFunctionRoutes` maps
each function route with an `HttpMethodRouteConstraint` of its declared methods; `GrpcMessageConversionExtensions.
ToRpcHttp` builds the request the worker gets (query values via `StringValues.ToString()`, empty ones
dropped because the Python worker does not announce `UseNullableValueDictionaryForHttp`; the body only
`if (request.Body != null && request.ContentLength > 0)`). The 230 s limit is the App Service front end's
(learn.microsoft.com, "Azure Functions HTTP trigger", Limits).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from devhost.testing.harness import DevHost


def test_a_method_the_route_does_not_declare_is_404(sample_host: DevHost) -> None:
    """`items/{id:int}` declares GET only: every other method, HEAD and OPTIONS too, matches no route."""
    assert sample_host.client.get("/api/items/7").status_code == 200
    for method in ("HEAD", "OPTIONS", "DELETE", "POST", "PUT", "PATCH"):
        response = sample_host.client.request(method, "/api/items/7")
        assert response.status_code == 404, (method, response.status_code)
        assert "Allow" not in response.headers
    # A route that declares no methods would take any; `echo` declares GET and POST.
    assert sample_host.client.request("HEAD", "/api/echo").status_code == 404


def test_empty_query_parameters_are_dropped_and_repeated_ones_joined(sample_host: DevHost) -> None:
    response = sample_host.client.get("/api/echo?a=1&a=2&code=&empty=&b=x%2Cy&B=z")
    assert response.status_code == 200, response.text
    # Names compare case-insensitively in ASP.NET Core's QueryCollection; the first spelling is kept.
    assert response.json()["params"] == {"a": "1,2", "b": "x,y,z"}


def test_a_body_without_content_length_reaches_the_function_empty(sample_host: DevHost) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"region,amount\n"
        yield b"north,1\n"

    chunked = sample_host.client.post("/api/echo", content=chunks(), headers={"Content-Type": "text/csv"})
    assert chunked.status_code == 200, chunked.text
    assert chunked.json()["body_length"] == 0
    sized = sample_host.client.post("/api/echo", content=b"region,amount\nnorth,1\n")
    assert sized.json()["body_length"] == 22


def test_a_response_later_than_the_front_end_limit_is_a_500(sample_factory: Any) -> None:
    """After 230 s (1 s here) the front end answers 500 "The request timed out"; the function runs on.

    Azure docs say the load balancer returns 502; what clients observe from App Service is 500
    (MicrosoftDocs/azure-docs#94418): devhost answers 500, never the function's late 200.
    """
    host = sample_factory(env={"DEVHOST_HTTP_RESPONSE_LIMIT": "1"})
    started = time.monotonic()
    response = host.client.get("/api/slow", params={"seconds": "3"})
    elapsed = time.monotonic() - started
    assert response.status_code == 500
    assert "The request timed out" in response.text
    assert elapsed < 2.5
    deadline = time.monotonic() + 10
    while "Executed 'Functions.slow_http' (Succeeded" not in host.logs():
        assert time.monotonic() < deadline, host.logs()
        time.sleep(0.1)
    fast = host.client.get("/api/slow", params={"seconds": "0"})
    assert fast.status_code == 200 and fast.text == "finally"
