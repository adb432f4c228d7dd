"""api/web.py without a host: which files are served, and the CSP's one foreign origin (the Blob endpoint)."""

from __future__ import annotations

from typing import Any

import pytest

from api.problems import Problem
from api.web import WEB_ROOT, resolve_asset, security_headers
from shared.settings import Settings


def settings(**values: Any) -> Settings:
    return Settings.model_validate(values)


def test_the_csp_allows_the_blob_endpoint_of_each_storage_configuration() -> None:
    cases = {
        "https://stlongrun.blob.core.windows.net": {
            "AzureWebJobsStorage__blobServiceUri": "https://stlongrun.blob.core.windows.net/"
        },
        "http://127.0.0.1:10000": {"AzureWebJobsStorage": "UseDevelopmentStorage=true"},
        "https://acct.blob.core.chinacloudapi.cn": {
            "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;"
            "EndpointSuffix=core.chinacloudapi.cn"
        },
    }
    for origin, values in cases.items():
        csp = security_headers(settings(**values))["Content-Security-Policy"]
        assert f"connect-src 'self' {origin};" in csp, csp
        assert "script-src 'self';" in csp and "'unsafe-inline'" not in csp
    assert "connect-src 'self';" in security_headers(settings())["Content-Security-Policy"]


@pytest.mark.parametrize(
    "relative",
    [
        "",
        "..",
        "../function_app.py",
        "ui/../../x.js",
        "vendor//uplot.js",
        ".hidden.js",
        "a\\b.js",
        "index.htm",
        "x.py",
        "\x00.js",
        "a\x00b.css",
        "a\nb.js",
        "é.js",
    ],
)
def test_nothing_outside_web_or_of_another_type_is_served(relative: str) -> None:
    with pytest.raises(Problem) as refused:
        resolve_asset(relative)
    assert refused.value.status == 404


def test_our_files_are_served() -> None:
    assert resolve_asset("app.js") == WEB_ROOT / "app.js"
    assert resolve_asset("favicon.svg") == WEB_ROOT / "favicon.svg"


def test_the_dashboard_guide_quotes_the_headers_as_served() -> None:
    guide = " ".join((WEB_ROOT.parent / "docs" / "dashboard.md").read_text().split())
    headers = security_headers(settings())
    policy = headers["Content-Security-Policy"].replace("connect-src 'self'", "connect-src 'self' <Blob endpoint>")
    assert f"`Content-Security-Policy: {policy}`" in guide
    for name, value in headers.items():
        if name != "Content-Security-Policy":
            assert f"`{name}: {value}`" in guide, name
