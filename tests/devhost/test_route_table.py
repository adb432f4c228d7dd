"""Which function an HTTP request reaches, and which route tables the host refuses to start with.

As azure-functions-host 89dc438d: the routes are mapped in the order of the function list, sorted by name
ignoring case (src/WebJobs.Script/Host/FunctionMetadataManager.cs:192, `OrderBy(f => f.Name,
StringComparer.OrdinalIgnoreCase)`), into a plain RouteCollection where the first match wins; and
ScriptHost.ValidateHttpFunction / HttpRoutesConflict (src/WebJobs.Script/Host/ScriptHost.cs) refuse routes
in the host's own space and two functions with the same template and a method in common.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from devhost.config import HostConfig
from devhost.indexing import FunctionSpec, IndexingError, _check_routes
from devhost.routing import RouteTemplate
from devhost.server import HttpFront, routing_path


def http(name: str, route: str, methods: tuple[str, ...] = ()) -> FunctionSpec:
    spec = FunctionSpec(name, "httpTrigger", {"name": "req"}, [], lambda req: None)
    spec.route, spec.methods = RouteTemplate.parse(route), methods
    return spec


def front(*specs: FunctionSpec) -> HttpFront:
    none = cast(Any, None)
    return HttpFront(HostConfig(app_dir=Path(".")), list(specs), none, none, enforce_auth=False)


def reached(host: HttpFront, path: str, method: str = "POST") -> str | None:
    found = host._route(path, method)
    return found[0].name if found else None


def test_the_first_route_by_function_name_wins_not_the_most_literal_one() -> None:
    # The app's pair: jobs_batch sorts before job_item ignoring case ('S' < '_'), so batch is reached.
    assert reached(front(http("job_item", "jobs/{job_id}"), http("jobs_batch", "jobs/batch")), "jobs/batch") == (
        "jobs_batch"
    )
    # Renamed so that it sorts after the item route, the batch route is never reached, as in Azure.
    assert reached(front(http("job_item", "jobs/{job_id}"), http("submit_jobs", "jobs/batch")), "jobs/batch") == (
        "job_item"
    )
    # A route that matches only by method is passed over for the next one (HttpMethodRouteConstraint).
    host = front(http("a_item", "jobs/{job_id}", ("GET",)), http("b_batch", "jobs/batch", ("POST",)))
    assert reached(host, "jobs/batch", "POST") == "b_batch" and reached(host, "jobs/batch", "GET") == "a_item"


@pytest.mark.parametrize(
    "specs",
    [
        [http("a", "jobs/{id}"), http("b", "JOBS/{id}/")],  # the same template, case and slashes aside
        [http("a", "jobs", ("GET", "POST")), http("b", "jobs", ("POST",))],  # a method in common
        [http("a", "jobs", ("GET",)), http("b", "jobs")],  # no methods: all of them
        [http("a", "admin/jobs")],
        [http("a", "Runtime/x")],
        [http("a", "administration")],  # StartsWith, not a segment
    ],
)
def test_route_tables_the_host_refuses_at_start_up(specs: list[FunctionSpec]) -> None:
    with pytest.raises(IndexingError, match="conflicts"):
        _check_routes(specs)


def test_the_same_template_with_other_methods_is_two_routes() -> None:
    _check_routes([http("a", "jobs", ("GET",)), http("b", "jobs", ("POST",)), http("c", "my/admin")])


@pytest.mark.parametrize(
    ("level", "key", "allowed"),
    [
        ("function", "local-function-key", True),
        ("function", "local-system-key", False),  # a system key is AuthorizationLevel.System, not Function
        ("system", "local-system-key", True),
        ("system", "local-function-key", False),
        ("admin", "local-system-key", False),  # admin needs the master key, which devhost has none of
        ("anonymous", "", True),
        ("function", "", False),
        ("function", "clé", False),  # not ASCII: refused, not a 500 (hmac.compare_digest takes ASCII str only)
    ],
)
def test_a_key_opens_only_its_own_level(level: str, key: str, allowed: bool) -> None:
    from aiohttp.test_utils import make_mocked_request

    config = HostConfig(app_dir=Path("."))
    config.function_keys, config.system_key = {"default": "local-function-key"}, "local-system-key"
    host = HttpFront(config, [], cast(Any, None), cast(Any, None), enforce_auth=True)
    spec = http("f", "f")
    spec.auth_level = level
    request = make_mocked_request("GET", "/api/f", headers={"x-functions-key": key} if key else {})
    assert host._authorized(spec, request) is allowed
    # In the query instead; an empty header present wins over it (the host reads the header when it is there).
    assert host._authorized(spec, make_mocked_request("GET", f"/api/f?code={key}")) is allowed
    empty_header = make_mocked_request("GET", f"/api/f?code={key}", headers={"x-functions-key": ""})
    assert host._authorized(spec, empty_header) is (level == "anonymous")


def test_an_escaped_slash_is_data_not_a_separator() -> None:
    # dotnet/aspnetcore#30655: Kestrel decodes every escape in the path except %2F.
    assert routing_path("/api/jobs%2Fbatch?x=%2F") == "/api/jobs%2Fbatch"
    assert routing_path("/api/jobs/a%2fb") == "/api/jobs/a%2Fb"
    assert routing_path("/api/jobs/%61%20b%252F") == "/api/jobs/a b%2F"  # %25 is a percent sign, then text
    host = front(http("jobs_batch", "jobs/batch"), http("job_item", "jobs/{job_id}"))
    assert reached(host, routing_path("/api/jobs%2Fbatch")[len("/api/") :]) is None  # one segment, no route
    found = host._route(routing_path("/api/jobs/a%2Fb")[len("/api/") :], "GET")
    assert found is not None and found[0].name == "job_item" and found[1] == {"job_id": "a%2Fb"}


def test_one_trailing_slash_is_ignored_an_empty_segment_is_not() -> None:
    host = front(http("job_item", "jobs/{job_id}"), http("jobs_collection", "jobs"))
    assert reached(host, "jobs/") == "jobs_collection" and reached(host, "jobs/x/") == "job_item"
    assert reached(host, "/jobs/x") is None and reached(host, "jobs//") is None and reached(host, "jobs//x") is None
