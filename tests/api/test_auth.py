"""Function-level auth on every route but health (devhost --enforce-auth behaves as Azure does)."""

from __future__ import annotations

from tests.api.probes import FUNCTION_KEY


def test_routes_need_a_function_key_except_health(devhost_factory):
    host = devhost_factory(args=["--enforce-auth"])
    client = host.client
    assert client.post("/api/jobs", json={"kind": "simulate"}).status_code == 401
    for path in ("/api/jobs", "/api/jobs/" + "0" * 32, "/api/openapi.json", "/api/dead-letters"):
        assert client.get(path).status_code == 401, path
    assert client.post("/api/uploads").status_code == 401
    assert client.get("/api/health").status_code == 200

    keyed = {"x-functions-key": FUNCTION_KEY}
    response = client.post("/api/jobs", json={"kind": "simulate"}, headers=keyed)
    assert response.status_code == 202, response.text
    assert client.get(response.headers["location"], headers=keyed).status_code in (200, 202)
    assert client.get(response.headers["location"], params={"code": FUNCTION_KEY}).status_code in (200, 202)
    assert client.get(response.headers["location"], headers={"x-functions-key": "wrong"}).status_code == 401
