"""HTTP triggers: routes with constraints, methods, query, auth levels."""

from __future__ import annotations

from typing import Any

from devhost.testing.harness import DevHost
from tests.devhost.conftest import MANAGEMENT


def test_route_parameters_constraints_and_query(sample_host: DevHost) -> None:
    response = sample_host.client.get("/api/items/42", params={"q": "x y"})
    assert response.status_code == 200
    assert response.json() == {"id": 42, "q": "x y", "method": "GET"}
    assert response.headers["Content-Type"].startswith("application/json")
    assert sample_host.client.get("/api/items/abc").status_code == 404  # {id:int}


def test_unknown_routes_and_wrong_methods(sample_host: DevHost) -> None:
    missing = sample_host.client.get("/api/no/such/route")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("application/problem+json")
    # A method the route does not declare is no route at all (see test_http_delivery.py).
    assert sample_host.client.delete("/api/items/1").status_code == 404
    assert sample_host.client.get("/outside/prefix").status_code == 404


def test_auth_is_not_enforced_by_default(sample_host: DevHost) -> None:
    assert sample_host.client.post("/api/start/sequence").status_code == 202


def test_enforce_auth_requires_function_keys(sample_factory: Any) -> None:
    host = sample_factory(args=["--enforce-auth"])
    assert host.client.post("/api/start/sequence").status_code == 401
    assert host.client.post("/api/start/sequence", headers={"x-functions-key": "wrong"}).status_code == 401
    assert host.client.post("/api/start/sequence", headers={"x-functions-key": "sample-key"}).status_code == 202
    assert host.client.post("/api/start/sequence", params={"code": "sample-key"}).status_code == 202
    assert host.client.get("/api/items/1").status_code == 200  # anonymous route
    # The webhooks need the system key; the function key is not enough.
    assert host.client.get(f"{MANAGEMENT}/instances/x", params={"code": "sample-key"}).status_code == 401
    assert host.client.get(f"{MANAGEMENT}/instances/x", params={"code": "sample-system-key"}).status_code == 404
