"""HTTP trigger route templates (ASP.NET style) matched against request paths."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONSTRAINTS = {
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "decimal": r"-?\d+(?:\.\d+)?",
    "double": r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?",
    "float": r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?",
}
_PARAM = re.compile(r"\{(?P<star>\*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<constraint>[^}?=]+))?(?P<opt>\?)?\}")


class RouteError(ValueError):
    """A route template the host would refuse."""


@dataclass(frozen=True)
class RouteTemplate:
    """An ASP.NET-style route template (`jobs/{id:guid}`, `{*rest}`, `{opt?}`) compiled to a regex."""

    template: str
    pattern: re.Pattern[str]
    parameters: tuple[str, ...]

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        """Compile `template`; raise RouteError for unbalanced braces or an unknown constraint."""
        template = template.strip("/")
        regex = ""
        names: list[str] = []
        position = 0
        for match in _PARAM.finditer(template):
            literal = template[position : match.start()]
            if "{" in literal or "}" in literal:
                raise RouteError(f"unbalanced braces in route {template!r}")
            regex += re.escape(literal)
            constraint = match["constraint"]
            if constraint and constraint.split("(")[0] not in _CONSTRAINTS:
                raise RouteError(f"unknown route constraint {constraint!r} in {template!r}")
            body = ".*" if match["star"] else (_CONSTRAINTS[constraint.split("(")[0]] if constraint else "[^/]+")
            group = f"(?P<{match['name']}>{body})"
            if match["opt"] or match["star"]:
                # An optional trailing parameter may be absent together with its slash.
                if regex.endswith("/"):
                    regex = regex[:-1] + f"(?:/{group})?"
                else:
                    regex += f"{group}?"
            else:
                regex += group
            names.append(match["name"])
            position = match.end()
        tail = template[position:]
        if "{" in tail or "}" in tail:
            raise RouteError(f"unbalanced braces in route {template!r}")
        regex += re.escape(tail)
        return cls(template, re.compile(f"^{regex}/?\\Z", re.IGNORECASE | re.DOTALL), tuple(names))

    def match(self, path: str) -> dict[str, str] | None:
        """The route parameters if `path` (below the route prefix) matches, else None."""
        # One trailing slash is ignored (the pattern's `/?`); an empty segment (`//`) matches nothing, as in
        # ASP.NET's template matcher, so `/api//jobs/x` is no route.
        found = self.pattern.match(path)
        if not found:
            return None
        return {k: v for k, v in found.groupdict().items() if v is not None}
