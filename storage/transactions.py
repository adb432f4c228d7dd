"""Entity group transactions of the sync Table client, sent without the SDK's multipart machinery.

`TableClient.submit_transaction` builds the `$batch` body with the email package and reads the answer
through azure-core's multipart parser, which runs every part's response policies on a thread pool
created per call: about 8 ms of a 12 ms ledger transaction on Azurite, most of it CPU, on the submit
path of every job (jobs.admission). Here the operations are built by the SDK itself (the same requests,
entity serialization and conditional headers as `submit_transaction`), framed as the same multipart
request and sent through the client's own signed, retried pipeline; only the framing and the reading
of the answer are ours.

Anything this module cannot read as a plain success or a plain conditional failure (an error outside
the change set, a part it cannot parse, a status other than 404/409/412) is handed to the SDK, which
sends the transaction again and raises its own error. That is safe: a transaction the service refused
changed nothing, so sending it again is a fresh attempt, as the SDK's retry policy would make.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.handlers import format_date_time

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.data.tables import TableClient
from azure.data.tables._table_batch import TableBatchOperations

CONDITION_FAILED = (404, 409, 412)
"""The statuses of a change set that lost to another writer: a row vanished, appeared, or changed."""

_CHANGESET = re.compile(rb"boundary=(changesetresponse_[A-Za-z0-9_-]+)")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3})")
_FAILED_AT = re.compile(r"(\d+):")


@dataclass(frozen=True)
class Transacted:
    """What became of a transaction: applied (failed is None, with each entity's new ETag, "" where storage
    sent none) or refused by a condition (the index of the operation that failed it, -1 when storage did not
    say which, and the status)."""

    failed: int | None
    etags: tuple[str, ...] = ()
    status: int = 202


@dataclass(frozen=True)
class _Part:
    status: int
    headers: dict[str, str]
    body: bytes


def transact(table: TableClient, operations: Iterable[Any]) -> Transacted:
    """Submit `operations` (the tuples `submit_transaction` takes) as one entity group transaction.

    Raises what the SDK raises for anything but success or a conditional failure (CONDITION_FAILED).
    """
    ops = list(operations)
    batch = TableBatchOperations(
        config=table._client._config,  # noqa: SLF001 - the SDK's own request builder, as submit_transaction uses it
        endpoint=f"{table.scheme}://{table._primary_hostname}",  # noqa: SLF001
        table_name=table.table_name,
        is_cosmos_endpoint=table._cosmos_endpoint,  # noqa: SLF001
    )
    for operation in ops:
        batch.add_operation(operation)
    if not batch.requests:
        return Transacted(None)
    response = table._client._client.send_request(_batch_request(table, batch.requests), stream=True)  # noqa: SLF001
    content = response.read()
    parts = _parts(content) if response.status_code == 202 else None
    if parts is not None and len(parts) == len(batch.requests) and all(200 <= p.status < 300 for p in parts):
        return Transacted(None, tuple(part.headers.get("etag", "") for part in parts))
    if parts is not None and len(parts) == 1 and parts[0].status in CONDITION_FAILED:
        return Transacted(_failed_index(parts[0].body), status=parts[0].status)
    # Not an answer we read: let the SDK send it again and raise (or report) in its own way.
    try:
        results = table.submit_transaction(ops)
    except HttpResponseError as exc:
        if exc.status_code in CONDITION_FAILED:
            return Transacted(_failed_index(str(getattr(exc, "message", "") or "").encode()), status=exc.status_code)
        raise
    return Transacted(None, tuple(str(result.get("etag", "")) for result in results))


def _batch_request(table: TableClient, requests: list[HttpRequest]) -> HttpRequest:
    """The `$batch` request `TableClient.submit_transaction` sends: one change set of the operations."""
    changeset, batch = f"changeset_{uuid.uuid4()}", f"batch_{uuid.uuid4()}"
    now = format_date_time(time.time())  # what the SDK's StorageHeadersPolicy stamps on every part
    body = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode()]
    for content_id, request in enumerate(requests):
        request.headers["x-ms-date"] = now
        request.headers["Date"] = now
        body.append(
            f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: {content_id}\r\n\r\n".encode()
        )
        body.append(request.serialize() + b"\r\n")
    body.append(f"--{changeset}--\r\n\r\n--{batch}--\r\n".encode())
    return HttpRequest(
        "POST",
        f"{table.scheme}://{table._primary_hostname}/$batch",  # noqa: SLF001
        headers={
            "x-ms-version": table.api_version,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": f"multipart/mixed; boundary={batch}",
            "Accept": "application/json",
        },
        content=b"".join(body),
    )


def _parts(content: bytes) -> list[_Part] | None:
    """The HTTP responses of the change set in a `$batch` answer, in order; None if it holds no change set."""
    match = _CHANGESET.search(content)
    if match is None:
        return None
    delimiter = b"--" + match.group(1)
    parts: list[_Part] = []
    for segment in content.split(delimiter)[1:]:
        if segment.startswith(b"--"):
            break  # the closing delimiter
        # A part: its MIME headers, a blank line, then the HTTP response (status line, headers, blank, body).
        _, _, http = segment.partition(b"\r\n\r\n")
        status = _STATUS_LINE.match(http)
        if status is None:
            return None
        head, _, body = http.partition(b"\r\n\r\n")
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n")[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        parts.append(_Part(int(status.group(1)), headers, body.rstrip(b"\r\n")))
    return parts


def _failed_index(body: bytes) -> int:
    """The index of the operation that failed the change set, from its error message ("1:The specified entity
    already exists."); -1 when storage did not say which (TableTransactionError would say 0)."""
    try:
        error = json.loads(body)
        message = str(error["odata.error"]["message"]["value"])
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", errors="replace")
    match = _FAILED_AT.match(message)
    return int(match.group(1)) if match else -1
