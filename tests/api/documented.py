"""Answers held to the OpenAPI document (`GET /api/openapi.json`): what a client generated from it expects."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from jsonschema import Draft202012Validator

HTTP_OWN_HEADERS = frozenset(
    {"host", "accept", "accept-encoding", "connection", "user-agent", "content-type", "content-length", "cookie"}
    | {"x-functions-key"}  # the function key: a security scheme of the document, not a parameter
)
"""Request headers HTTP and the platform give every operation: the document declares only the API's own."""


def closed(schema: Any) -> Any:
    """A copy of `schema` where every object that lists its properties allows no others.

    The document leaves its objects open, so that clients tolerate members added later; here a member the
    server sends but the document does not name is a gap in the document, and is reported.
    """
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copied = {key: closed(value) for key, value in schema.items()}
    if "properties" in copied and "additionalProperties" not in copied:
        copied["additionalProperties"] = False
    return copied


@dataclass
class Contract:
    """The OpenAPI document of a running devhost, and what its answers broke of it."""

    doc: dict[str, Any]
    broken: list[str] = field(default_factory=list)

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        """The document's template and operation for a concrete path (literal segments win over parameters)."""
        candidates = []
        for template, item in self.doc["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(pattern, path) and method.lower() in item:
                candidates.append((template.count("{"), template))
        assert candidates, f"{method} {path}: no operation in the document"
        template = min(candidates)[1]
        return template, self.doc["paths"][template][method.lower()]

    def schema(self, schema: dict[str, Any]) -> Draft202012Validator:
        """A validator of `schema` (a part of the document: its refs resolve), members it does not name refused."""
        return Draft202012Validator(closed({**schema, "components": self.doc["components"]}))

    def json_body(self, method: str, template: str) -> Draft202012Validator:
        """A validator of the JSON request body the document gives an operation."""
        body = self.doc["paths"][template][method.lower()]["requestBody"]["content"]["application/json"]
        return self.schema(body["schema"])

    def _parameters(self, template: str, operation: dict[str, Any], location: str) -> dict[str, dict[str, Any]]:
        """The parameters an operation declares `in` a location (its path's too), by lower-cased name (how
        headers compare)."""
        every = [*self.doc["paths"][template].get("parameters", []), *operation.get("parameters", [])]
        return {parameter["name"].lower(): parameter for parameter in every if parameter["in"] == location}

    def _check_request(self, where: str, template: str, operation: dict[str, Any], request: httpx.Request) -> None:
        """An accepted request sent only query parameters and headers of its own (not HTTP's) that the operation
        declares (a generated client sends no others), headers with valid values. `code` is the function key,
        a security scheme of its own."""
        queries = {parameter["name"] for parameter in self._parameters(template, operation, "query").values()}
        for name in sorted(set(request.url.params) - queries - {"code"}):  # query names are case-sensitive
            self.broken.append(f"{where}: query parameter {name!r} is not declared")
        headers = self._parameters(template, operation, "header")
        for name, value in request.headers.items():
            if name.lower() in HTTP_OWN_HEADERS:
                continue
            parameter = headers.get(name.lower())
            if parameter is None:
                self.broken.append(f"{where}: request header {name!r} is not declared")
                continue
            for error in self.schema(parameter["schema"]).iter_errors(value):
                self.broken.append(f"{where}: request header {name}={value!r}: {error.message}")

    def check(self, response: httpx.Response, body: bytes | None = None) -> None:
        """Record what `response` breaks of its operation's documented answers."""
        request = response.request
        template, operation = self.operation(request.method, request.url.path)
        where = f"{request.method} {request.url.path} -> {response.status_code}"
        if response.is_success:
            self._check_request(where, template, operation, request)
        documented = operation["responses"].get(str(response.status_code))
        if documented is None:
            self.broken.append(f"{where}: status not listed ({sorted(operation['responses'])})")
            return
        for name, header in documented.get("headers", {}).items():
            value = response.headers.get(name)
            if value is None:
                continue
            typed: Any = value
            if header["schema"].get("type") == "integer":
                typed = int(value) if re.fullmatch(r"[0-9]+", value) else value
            for error in self.schema(header["schema"]).iter_errors(typed):
                self.broken.append(f"{where}: header {name}={value!r}: {error.message}")
        content = documented.get("content")
        if not content:
            return
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if media not in content:
            self.broken.append(f"{where}: content type {media!r} not among {sorted(content)}")
            return
        schema = content[media].get("schema")
        if schema is None or not (media == "application/json" or media.endswith("+json")):
            return
        for error in self.schema(schema).iter_errors(json.loads(response.content if body is None else body)):
            path = "/".join(str(part) for part in error.absolute_path)
            self.broken.append(f"{where}: body at /{path}: {error.message[:200]}")
