"""The dashboard (`/api/ui`) and Swagger UI (`/api/docs`): static files from `web/`, served by the app.

The pages hold no data and no key, so their routes are anonymous; every API call the pages make sends
the key the user typed (kept in the browser session only) in the header API_KEY_HEADER names: the function
key's x-functions-key, or Ocp-Apim-Subscription-Key behind API Management (a meta tag tells the page).
Files come from `web/` (ours) and `web/vendor/` (uPlot and swagger-ui-dist, copied from node_modules by
`make vendor`; see docs/dashboard.md).
Every answer carries a Content-Security-Policy without inline scripts.

What the pages share (the head's meta tags, the key dialog) is written once in `web/partials/` and put in
place when a page is served (`{{include NAME}}` on a line of its own); partials are not served by themselves.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from api.app import blueprint
from api.http import ROUTE_METHODS, dispatch, route_param
from api.links import base_url
from api.problems import Problem
from shared.settings import Settings, get_settings
from storage.clients import connection_string

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
VENDOR_DIR = WEB_ROOT / "vendor"
PARTIALS_DIR = WEB_ROOT / "partials"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
"""What may be served, by extension; anything else (source maps, READMEs, dotfiles) is 404."""

_PAGES = {"ui": "index.html", "docs": "docs.html"}
_BASE_MARKER = "{{BASE}}"
_KEY_HEADER_MARKER = "{{KEY_HEADER}}"
_INCLUDE = re.compile(r"^([ \t]*)\{\{include ([a-z0-9-]+\.html)\}\}$", re.M)


def _include(match: re.Match[str]) -> str:
    """One partial, indented as the line that names it."""
    indent, name = match.group(1), match.group(2)
    fragment = (PARTIALS_DIR / name).read_text(encoding="utf-8")
    return "\n".join(indent + line if line else line for line in fragment.rstrip("\n").split("\n"))


def page_template(name: str) -> str:
    """A page's HTML with its partials in place (its markers for the base path and key header still in it)."""
    return _INCLUDE.sub(_include, (WEB_ROOT / _PAGES[name]).read_text(encoding="utf-8"))


def _blob_origin(settings: Settings) -> str | None:
    """The origin of the Blob endpoint: the submit form PUTs uploads there (the CSP must allow it)."""
    uri = settings.blob_service_uri
    if not uri:
        conn = connection_string(settings) or ""
        parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
        if "BlobEndpoint" in parts:
            uri = parts["BlobEndpoint"]
        elif "AccountName" in parts:
            scheme = parts.get("DefaultEndpointsProtocol", "https")
            uri = f"{scheme}://{parts['AccountName']}.blob.{parts.get('EndpointSuffix', 'core.windows.net')}"
    if not uri:
        return None
    split = urlsplit(uri)
    return f"{split.scheme}://{split.netloc}" if split.scheme and split.netloc else None


def security_headers(settings: Settings) -> dict[str, str]:
    """CSP (no inline scripts, nothing from other origins but the upload endpoint) and friends."""
    connect = " ".join(filter(None, ["'self'", _blob_origin(settings)]))
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src {connect}",
            "base-uri 'self'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        # The pages are small and change with each deployment; the vendored files are versioned by package.json.
        "Cache-Control": "no-cache",
    }


_ASSET_NAME = re.compile(r"[A-Za-z0-9._/-]+")
"""The characters the dashboard's file names use; any other name is no file of it."""


def resolve_asset(relative: str) -> Path:
    """The file under web/ that `relative` names; 404 for anything outside it or of a type not served."""
    if not _ASSET_NAME.fullmatch(relative) or any(part in ("", ".", "..") for part in relative.split("/")):
        raise Problem(404, "no such file")  # (a NUL or a control character would fail the file system call)
    if any(part.startswith(".") for part in relative.split("/")) or relative.startswith("partials/"):
        raise Problem(404, "no such file")
    path = (WEB_ROOT / relative).resolve()
    if not path.is_relative_to(WEB_ROOT) or path.suffix not in CONTENT_TYPES or not path.is_file():
        if relative.startswith("vendor/") and not VENDOR_DIR.is_dir():
            # A package built without `make vendor`: say what is missing instead of a bare 404.
            raise Problem(503, "the dashboard's vendored libraries are missing: run `make vendor` before deploying")
        raise Problem(404, "no such file")
    return path


def _page(name: str, req: Request, settings: Settings) -> Response:
    """A page, with <base href> set to its own public path (e.g. /longrun/api/ui behind a gateway): `ui/app.js`,
    `docs`, `jobs` resolve under /api/ and `#/jobs` stays on the page."""
    text = page_template(name)
    page_path = urlsplit(base_url(req, settings)).path.rstrip("/") + "/api/" + name
    # The header the pages send the user's key in (web/key.js reads it from a meta tag: no inline script).
    # API_KEY_HEADER is one of two fixed names (shared/settings.py), so it needs no HTML escaping.
    body = text.replace(_BASE_MARKER, page_path).replace(_KEY_HEADER_MARKER, settings.api_key_header)
    return Response(
        body, status_code=200, headers={"Content-Type": CONTENT_TYPES[".html"], **security_headers(settings)}
    )


def _asset(relative: str, settings: Settings) -> Response:
    path = resolve_asset(relative)
    headers = {"Content-Type": CONTENT_TYPES[path.suffix], **security_headers(settings)}
    return Response(path.read_bytes(), status_code=200, headers=headers)


async def serve(req: Request, page: str) -> Response:
    """GET /api/<page> (the page) or /api/ui/<file> (a file under web/)."""

    async def answer() -> Response:
        settings = get_settings()
        relative = (route_param(req, "path") or "").strip("/")
        if not relative or relative in ("index.html", _PAGES[page]):
            return _page(page, req, settings)
        return _asset(relative, settings)

    return await dispatch(req, {"GET": answer})


@blueprint.route(route="ui/{*path}", methods=ROUTE_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def dashboard(req: Request) -> Response:
    """GET: the web dashboard (its API calls carry the function key the user enters)."""
    return await serve(req, "ui")


@blueprint.route(route="docs", methods=ROUTE_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def api_docs(req: Request) -> Response:
    """GET: Swagger UI over /api/openapi.json (its files are served under /api/ui/)."""
    return await serve(req, "docs")
