"""Table-driven bad input: each request gets its problem document, and nothing is stored or started."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.api.probes import footprint

HEX = "0123456789abcdef" * 2


@dataclass
class Case:
    name: str
    status: int
    fields: tuple[str, ...] = ()  # each must appear in the problem's `errors`
    json_body: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def envelope(**overrides: Any) -> dict[str, Any]:
    return {"kind": "vector-normalize", "input": {"vector_data": [[3.0, 4.0]]}, **overrides}


def nested(depth: int) -> Any:
    value: Any = 1.0
    for _ in range(depth):
        value = [value]
    return value


def ref(input_ref: Any) -> dict[str, Any]:
    return envelope(input=None, input_ref=input_ref)


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def ct(value: str) -> dict[str, str]:
    return {"Content-Type": value}


JSON = ct("application/json")
SIM = {"kind": "simulate"}
CSV_INLINE = {"kind": "csv-report", "input": {}, "options": {"group_by": "a"}}
CASES = [
    Case("malformed JSON", 400, ("body",), content=b'{"kind": "simulate",', headers=JSON),
    Case("empty body", 400, ("body",), content=b"", headers=JSON),
    Case("NaN is not JSON", 400, ("body",), content=b'{"kind": "simulate", "deadline_seconds": NaN}', headers=JSON),
    Case("a number no double holds", 400, ("body",), content=b'{"kind": "simulate", "x": 1e999}', headers=JSON),
    Case(
        "an overflowing number where any JSON goes", 400, ("body",), headers=JSON,
        content=b'{"kind": "vector-normalize", "input": {"vector_data": [[3, 4]], "metadata": {"x": [[-1e400]]}}}',
    ),
    Case(
        "the same member twice", 400, ("body",), headers=JSON,
        content=b'{"kind": "simulate", "kind": "vector-normalize", "input": {"vector_data": [[1, 2]]}}',
    ),
    Case("invalid UTF-8", 400, ("body",), content=b'{"kind": "simu\xff\xfelate"}', headers=JSON),
    Case("lone surrogate", 400, ("body",), content=b'{"kind": "simulate", "options": {"\\ud800": 1}}', headers=JSON),
    Case("deep nesting", 400, ("body",), json_body=envelope(input={"vector_data": nested(64)})),
    Case("very deep nesting", 400, ("body",), content=b"[" * 100_000 + b"]" * 100_000, headers=JSON),
    Case("not an object", 422, ("body",), json_body=[{"kind": "simulate"}]),
    Case("kind missing", 422, ("kind",), json_body={"options": {}}),
    Case("kind of the wrong type", 422, ("kind",), json_body={"kind": 5}),
    Case("unknown kind", 422, ("kind",), json_body={"kind": "mine-bitcoin"}),
    Case("unknown field", 422, ("callback_url",), json_body=envelope(callback_url="http://127.0.0.1/x")),
    Case("options of the wrong type", 422, ("options",), json_body={"kind": "simulate", "options": [1]}),
    Case("invalid options", 422, ("options.chunks",), json_body={"kind": "simulate", "options": {"chunks": 0}}),
    Case("unknown option", 422, ("options.colour",), json_body={"kind": "simulate", "options": {"colour": "red"}}),
    Case("deadline zero", 422, ("deadline_seconds",), json_body={"kind": "simulate", "deadline_seconds": 0}),
    Case("deadline as text", 422, ("deadline_seconds",), json_body={"kind": "simulate", "deadline_seconds": "60"}),
    Case("deadline as bool", 422, ("deadline_seconds",), json_body={"kind": "simulate", "deadline_seconds": True}),
    Case("input for a kind without input", 422, ("input",), json_body={"kind": "simulate", "input": {"a": 1}}),
    Case("neither input nor input_ref", 422, ("input", "input_ref"), json_body={"kind": "vector-normalize"}),
    Case("both input and input_ref", 422, ("input", "input_ref"), json_body=envelope(input_ref=f"uploads/{HEX}")),
    Case("ragged vectors", 422, ("input",), json_body=envelope(input={"vector_data": [[1.0, 2.0], [1.0]]})),
    Case("no vectors", 422, ("input",), json_body=envelope(input={"vector_data": []})),
    Case("inline JSON for a CSV kind", 422, ("input",), json_body=CSV_INLINE),
    Case("oversized JSON", 413, json_body=envelope(input={"vector_data": [[1.5] * 300_000]})),
    Case("unsupported content type", 415, ("Content-Type",), content=b"kind=simulate", headers=ct("text/plain")),
    Case("no content type", 415, ("Content-Type",), content=b'{"kind": "simulate"}'),
    Case("form body", 415, ("Content-Type",), content=b"a=1", headers=ct("application/x-www-form-urlencoded")),
    Case("raw CSV without kind", 422, ("kind",), content=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"}),
    Case(
        "raw CSV for a JSON kind", 415, ("Content-Type",), content=b"a,b\n1,2\n",
        headers={"Content-Type": "text/csv"}, params={"kind": "vector-normalize"},
    ),
    Case(
        "raw body for a kind without input", 415, ("Content-Type",), content=b"a,b\n1,2\n",
        headers={"Content-Type": "text/csv"}, params={"kind": "simulate"},
    ),
    Case(
        "raw CSV with a bad deadline", 422, ("deadline_seconds",), content=b"a,b\n1,2\n",
        headers={"Content-Type": "text/csv"}, params={"kind": "csv-report", "group_by": "a", "deadline_seconds": "-1"},
    ),
    Case(
        "raw CSV with a superscript deadline", 422, ("deadline_seconds",), content=b"a,b\n1,2\n",
        headers={"Content-Type": "text/csv"}, params={"kind": "csv-report", "deadline_seconds": "\u00b2"},
    ),
    Case(
        "raw CSV with an unknown option", 422, ("query.colour",), content=b"a,b\n1,2\n",
        headers={"Content-Type": "text/csv"}, params={"kind": "csv-report", "group_by": "a", "colour": "red"},
    ),
    Case(
        "empty raw CSV", 422, ("body",), content=b"",
        headers={"Content-Type": "text/csv"}, params={"kind": "csv-report", "group_by": "a", "metrics": "b"},
    ),
    Case("input_ref with ..", 422, ("input_ref",), json_body=ref("uploads/../jobs/x/input")),
    Case("input_ref %2e%2e", 422, ("input_ref",), json_body=ref("uploads/%2e%2e/results")),
    Case("input_ref in another container", 422, ("input_ref",), json_body=ref("results/jobs/a/result.json")),
    Case("input_ref of a job's input", 422, ("input_ref",), json_body=ref(f"jobs/{HEX}/input")),
    Case("input_ref as a URL", 422, ("input_ref",), json_body=ref(f"http://127.0.0.1:1/payloads/uploads/{HEX}")),
    Case("input_ref absolute path", 422, ("input_ref",), json_body=ref(f"/uploads/{HEX}")),
    Case("input_ref never issued", 422, ("input_ref",), json_body=ref(f"uploads/{HEX}")),
    Case("input_ref of the wrong type", 422, ("input_ref",), json_body=ref(["uploads/x"])),
    Case("empty idempotency key", 400, ("Idempotency-Key",), json_body=SIM, headers=key("")),
    Case("idempotency key too long", 400, ("Idempotency-Key",), json_body=SIM, headers=key("k" * 201)),
    Case("idempotency key with a tab", 400, ("Idempotency-Key",), json_body=SIM, headers=key("a\tb")),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_submissions_get_a_problem_and_leave_nothing_behind(devhost, azurite, case):
    before = footprint(devhost, azurite.connection_string)
    if case.json_body is not None:
        content = json.dumps(case.json_body).encode()
        headers = {"Content-Type": "application/json", **case.headers}
    else:
        content, headers = case.content or b"", case.headers
    response = devhost.client.post("/api/jobs", content=content, headers=headers, params=case.params)

    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == case.status
    assert problem["type"].startswith("urn:longrun:problem:") and problem["title"] and problem["detail"]
    assert problem["instance"] == "/api/jobs"
    named = [error["field"] for error in problem.get("errors", [])]
    for expected in case.fields:  # "input" is named by "input" itself or by "input.vector_data"
        assert any(name == expected or name.startswith(expected + ".") for name in named), problem
    assert footprint(devhost, azurite.connection_string) == before


def test_a_raw_body_for_a_kind_without_input_says_to_submit_json(devhost):
    response = devhost.client.post(
        "/api/jobs", content=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"}, params={"kind": "simulate"}
    )
    assert response.status_code == 415
    assert response.json()["detail"] == "simulate takes no input: submit it as JSON"
    assert response.json()["errors"] == [{"field": "Content-Type", "message": "application/json"}]


def test_fields_are_named_by_their_path_in_the_request_not_by_the_types_tried(devhost):
    # vector_data is a list of vectors or one vector: pydantic's location names the member of that union.
    response = devhost.client.post("/api/jobs", json=envelope(input={"vector_data": [["a"]]}))
    assert response.status_code == 422
    assert {error["field"] for error in response.json()["errors"]} == {"input.vector_data.0.0", "input.vector_data.0"}


def test_non_ascii_idempotency_keys_are_refused(devhost, azurite):
    before = footprint(devhost, azurite.connection_string)
    response = devhost.client.post(
        "/api/jobs", json={"kind": "simulate"}, headers=[(b"Idempotency-Key", "clé".encode())]
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"
    assert footprint(devhost, azurite.connection_string) == before


def test_body_limits_are_enforced_before_anything_is_stored(devhost_factory, azurite):
    host = devhost_factory(env={"MAX_RAW_BODY_BYTES": "1000", "MAX_JSON_BODY_BYTES": "500"})
    before = footprint(host, azurite.connection_string)
    raw = host.client.post(
        "/api/jobs",
        content=b"region,amount\n" + b"eu,1\n" * 300,
        headers={"Content-Type": "text/csv"},
        params={"kind": "csv-report", "group_by": "region", "metrics": "amount"},
    )
    assert raw.status_code == 413 and raw.json()["status"] == 413
    envelope_too_big = host.client.post("/api/jobs", json={"kind": "simulate", "options": {"x": "y" * 600}})
    assert envelope_too_big.status_code == 413
    assert footprint(host, azurite.connection_string) == before
    fits = host.client.post(
        "/api/jobs",
        content=b"region,amount\neu,1\n",
        headers={"Content-Type": "text/csv"},
        params={"kind": "csv-report", "group_by": "region", "metrics": "amount"},
    )
    assert fits.status_code == 202, fits.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/jobs/%0A"),
        ("GET", "/api/jobs/" + HEX[:16] + "%0A" + HEX[:16]),
        ("DELETE", "/api/jobs/%0D%0Aset-cookie"),
        ("GET", "/api/jobs/%0A/result"),
        ("GET", "/api/dead-letters/ab%0Acd"),
        ("POST", "/api/dead-letters/%5C%0A%C2%88%0A%C2%8D/replay"),
    ],
)
def test_ids_with_line_breaks_reach_their_route_and_get_a_problem(devhost, method, path):
    # The host routes segments on the decoded path (Kestrel's PathDecoder.DecodePath, dotnet/aspnetcore
    # src/Servers/Kestrel/Core/src/Internal/Http/PathDecoder.cs: everything but %2F is decoded into
    # HttpRequest.Path), so a `%0A` reaches the function's route and devhost must route it too; the worker's
    # web server must pass it on (api.http.EveryPath) instead of answering its own JSON 404 and leaving the
    # invocation waiting for a request it never gets.
    response = devhost.client.request(method, path)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404
