"""Whatever a client sends, the answer is a 2xx or a 4xx problem: never a 500."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ACCEPTED = {202, 400, 404, 405, 409, 413, 415, 422}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["csv-report", "vector-normalize", "simulate", ""]) | st.text(max_size=10),
        "input": json_values,
        "input_ref": st.text(max_size=60) | st.just("uploads/" + "0" * 32),
        "options": json_values,
        "deadline_seconds": json_values,
        "extra": json_values,
    },
)
content_types = st.sampled_from(
    ["application/json", "text/csv", "application/x-ndjson", "text/plain", "application/json; charset=utf-8", ""]
)
queries = st.dictionaries(
    st.sampled_from(["kind", "group_by", "metrics", "deadline_seconds", "x"]), st.text(max_size=12), max_size=4
)


def check(devhost: Any, response: Any) -> None:
    assert response.status_code in ACCEPTED, response.text
    if response.status_code == 202:
        devhost.client.delete(response.headers["location"])  # do not leave random jobs running
    else:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == response.status_code


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=envelopes, content_type=content_types, query=queries)
def test_random_envelopes_never_cause_a_server_error(devhost, body, content_type, query):
    headers = {"Content-Type": content_type} if content_type else {}
    check(devhost, devhost.client.post("/api/jobs", content=json.dumps(body).encode(), headers=headers, params=query))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=200), content_type=content_types, query=queries, key=st.text(max_size=30))
def test_random_bytes_never_cause_a_server_error(devhost, body, content_type, query, key):
    headers = {"Content-Type": content_type} if content_type else {}
    if key.isascii() and key.isprintable():
        headers["Idempotency-Key"] = key
    check(devhost, devhost.client.post("/api/jobs", content=body, headers=headers, params=query))


@given(path=st.text(alphabet="abcdef0123456789-_.%", max_size=40), query=queries)
@settings(max_examples=40, deadline=None)
def test_random_reads_never_cause_a_server_error(devhost, path, query):
    for url in (f"/api/jobs/{path}", f"/api/jobs/{path}/result", f"/api/dead-letters/{path}", "/api/jobs"):
        response = devhost.client.get(url, params=query)
        assert response.status_code in {200, 404, 405, 409, 422}, (url, response.text)
