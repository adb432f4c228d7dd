"""Absolute links to our own resources, right behind a gateway too.

`PUBLIC_BASE_URL` (e.g. https://api.example.com/longrun) is the public origin under which `/api/...`
is served; without it, links are built from the request's own scheme and host. Never Durable's
management URLs: they carry the system key and point at the backend host.
"""

from __future__ import annotations

from azurefunctions.extensions.http.fastapi import Request

from shared.settings import Settings


def base_url(req: Request, settings: Settings) -> str:
    """The origin links are built on: PUBLIC_BASE_URL, else the scheme and host the client asked for.

    With HTTP streams the host proxies the request to the worker's own web server on loopback, so the
    request's Host is that server's; the host's forwarder (YARP's default transforms, called by
    `DefaultHttpProxyService.StartForwarding`) sets X-Forwarded-Host and X-Forwarded-Proto, replacing
    whatever a client sent, and uvicorn applies X-Forwarded-Proto to the scheme for a loopback peer.
    """
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    host = req.headers.get("x-forwarded-host") or req.url.netloc
    return f"{req.url.scheme}://{host}"


def job_url(base: str, job_id: str) -> str:
    """The job's URL (its Location)."""
    return f"{base}/api/jobs/{job_id}"


def job_links(base: str, job_id: str) -> dict[str, str]:
    """The job resource's links: self, result, cancel."""
    url = job_url(base, job_id)
    return {"self": url, "result": f"{url}/result", "cancel": url}


def jobs_page_url(base: str, query: str) -> str:
    """The URL of a page of the job listing."""
    return f"{base}/api/jobs?{query}" if query else f"{base}/api/jobs"


def dead_letter_links(base: str, record_id: str) -> dict[str, str]:
    """A dead letter's links: self and replay."""
    url = f"{base}/api/dead-letters/{record_id}"
    return {"self": url, "replay": f"{url}/replay"}
