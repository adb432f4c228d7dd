"""Uploads (valet key): a write-only SAS URL for one server-named blob, then a job that reads it."""

from __future__ import annotations

import gzip
import re
from typing import Any

import httpx
from azure.storage.blob import BlobServiceClient

from tests.api.probes import footprint

CSV = b"region,amount,qty\neu,10,1\nus,5,2\neu,2.5,3\n"
OPTIONS = {"group_by": "region", "metrics": ["amount", "qty"]}


def create_upload(client: httpx.Client, content_type: str | None = "text/csv") -> dict[str, Any]:
    response = client.post("/api/uploads", json={"content_type": content_type} if content_type else None)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def put(upload: dict[str, Any], data: bytes, content_type: str = "text/csv") -> httpx.Response:
    headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": content_type}
    return httpx.put(upload["upload_url"], content=data, headers=headers, timeout=30)


def test_an_upload_feeds_a_job_whose_result_matches_the_raw_post(devhost):
    upload = create_upload(devhost.client)
    assert re.fullmatch(r"uploads/[0-9a-f]{32}", upload["input_ref"])
    assert upload["method"] == "PUT" and upload["expires_at"].endswith("Z")
    assert "sp=cw" in upload["upload_url"] or "sp=wc" in upload["upload_url"]
    assert put(upload, CSV).status_code == 201

    submitted = devhost.client.post(
        "/api/jobs", json={"kind": "csv-report", "input_ref": upload["input_ref"], "options": OPTIONS}
    )
    assert submitted.status_code == 202, submitted.text
    final = devhost.wait_for_job(submitted.headers["location"])
    assert final.json()["status"] == "COMPLETED", final.text
    result = devhost.client.get(final.json()["links"]["result"])
    assert result.status_code == 200
    report = result.json()
    assert report["rows"] == 3 and report["groups"]["eu"]["count"] == 2
    assert report["groups"]["eu"]["metrics"]["amount"]["sum"] == 12.5

    raw = devhost.client.post(
        "/api/jobs",
        content=CSV,
        headers={"Content-Type": "text/csv"},
        params={"kind": "csv-report", "group_by": "region", "metrics": "amount,qty"},
    )
    assert raw.status_code == 202, raw.text
    raw_final = devhost.wait_for_job(raw.headers["location"])
    assert devhost.client.get(raw_final.json()["links"]["result"]).json() == report

    as_csv = devhost.client.get(final.json()["links"]["result"], params={"format": "csv"})
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert b"eu" in as_csv.content
    hostile = "<script>alert(1)</script>"
    unsupported = devhost.client.get(final.json()["links"]["result"], params={"format": hostile})
    assert unsupported.status_code == 422
    assert hostile not in unsupported.text and "script" not in unsupported.text  # errors never echo values
    assert unsupported.json()["errors"] == [{"field": "format", "message": "one of: json, csv"}]


def test_the_upload_url_is_write_only_and_for_one_blob(devhost):
    upload = create_upload(devhost.client)
    assert put(upload, CSV).status_code == 201
    assert httpx.get(upload["upload_url"], timeout=10).status_code == 403
    other_blob = upload["upload_url"].replace(upload["input_ref"], "uploads/" + "0" * 32)
    assert httpx.put(other_blob, content=CSV, headers={"x-ms-blob-type": "BlockBlob"}, timeout=10).status_code == 403
    other_container = upload["upload_url"].replace("/payloads/", "/results/")
    assert httpx.put(other_container, content=CSV, headers={"x-ms-blob-type": "BlockBlob"}).status_code == 403


def test_an_upload_with_nothing_uploaded_or_the_wrong_type_is_refused(devhost, azurite):
    empty = create_upload(devhost.client)
    ndjson = create_upload(devhost.client, "application/x-ndjson")
    assert put(ndjson, b"[1.0, 2.0]\n", "application/x-ndjson").status_code == 201
    before = footprint(devhost, azurite.connection_string)
    for ref in (empty["input_ref"], ndjson["input_ref"]):
        response = devhost.client.post("/api/jobs", json={"kind": "csv-report", "input_ref": ref, "options": OPTIONS})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "input_ref"
    assert footprint(devhost, azurite.connection_string) == before


def test_upload_requests_are_validated(devhost):
    assert devhost.client.post("/api/uploads").status_code == 201  # the body is optional
    assert devhost.client.post("/api/uploads", json={"content_type": "image/png"}).status_code == 422
    assert devhost.client.post("/api/uploads", json={"size": 1}).status_code == 422
    malformed = devhost.client.post("/api/uploads", content=b"{", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert devhost.client.get("/api/uploads").status_code == 405


def test_a_large_raw_body_is_staged_in_blocks_and_processed(devhost, azurite):
    rows = b"".join(b"%s,%d,%d\n" % (b"eu" if n % 3 else b"us", n % 100, n % 7) for n in range(1_200_000))
    body = b"region,amount,qty\n" + rows
    assert len(body) > 2 * 4 * 1024 * 1024  # more than two 4 MB blocks
    response = devhost.client.post(
        "/api/jobs",
        content=body,
        headers={"Content-Type": "text/csv"},
        params={"kind": "csv-report", "group_by": "region", "metrics": "amount"},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
        properties = blobs.get_blob_client("payloads", f"jobs/{job_id}/input").get_blob_properties()
    assert properties.size == len(body) and properties.content_settings.content_type == "text/csv"
    final = devhost.wait_for_job(response.headers["location"], timeout=180)
    assert final.json()["status"] == "COMPLETED", final.text
    report = devhost.client.get(final.json()["links"]["result"]).json()
    assert report["rows"] == 1_200_000


def test_ndjson_is_accepted_raw_for_vector_normalize(devhost):
    response = devhost.client.post(
        "/api/jobs",
        content=b"[3.0, 4.0]\n[0.0, 0.0]\n[1.0, 0.0]\n",
        headers={"Content-Type": "application/x-ndjson"},
        params={"kind": "vector-normalize"},
    )
    assert response.status_code == 202, response.text
    final = devhost.wait_for_job(response.headers["location"])
    assert final.json()["status"] == "COMPLETED", final.text
    result = devhost.client.get(final.json()["links"]["result"]).json()
    assert result["processed_vectors"] == 3 and result["zero_vectors"] == 1
    assert result["vectors"][0] == [0.6, 0.8]


def test_only_a_block_blob_is_accepted_as_an_upload(devhost, azurite):
    """Page and append blobs (a 1 TiB sparse page blob costs nothing to create) are refused at submit (#16 item 5)."""
    for blob_type, extra in (("PageBlob", {"x-ms-blob-content-length": str(1024**4)}), ("AppendBlob", {})):
        upload = create_upload(devhost.client)
        headers = {"x-ms-blob-type": blob_type, "Content-Type": "text/csv", **extra}
        created = httpx.put(upload["upload_url"], content=b"", headers=headers, timeout=30)
        assert created.status_code == 201, created.text
        before = footprint(devhost, azurite.connection_string)
        submitted = devhost.client.post(
            "/api/jobs", json={"kind": "csv-report", "input_ref": upload["input_ref"], "options": OPTIONS}
        )
        assert submitted.status_code == 422, (blob_type, submitted.text)
        assert [e["field"] for e in submitted.json()["errors"]] == ["input_ref"]
        assert "block blob" in submitted.json()["detail"]
        assert footprint(devhost, azurite.connection_string) == before


def test_a_content_coded_upload_is_refused_at_submit(devhost, azurite):
    """An upload stored with a Content-Encoding holds compressed bytes, not the CSV the kind reads: refused
    like a raw body sent content-coded (there a 415), not accepted to fail when it runs."""
    upload = create_upload(devhost.client)
    # Put Blob takes the coding from Content-Encoding too in Azure; Azurite 3.35 reads only this header.
    headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": "text/csv", "x-ms-blob-content-encoding": "gzip"}
    assert httpx.put(upload["upload_url"], content=gzip.compress(CSV), headers=headers, timeout=30).status_code == 201
    before = footprint(devhost, azurite.connection_string)
    submitted = devhost.client.post(
        "/api/jobs", json={"kind": "csv-report", "input_ref": upload["input_ref"], "options": OPTIONS}
    )
    assert submitted.status_code == 422, submitted.text
    assert [e["field"] for e in submitted.json()["errors"]] == ["input_ref"]
    assert "Content-Encoding" in submitted.json()["detail"]
    assert footprint(devhost, azurite.connection_string) == before
