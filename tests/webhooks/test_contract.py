"""The OpenAPI document describes the webhook contract: the callback on every kind's submission, the raw
submit's query parameters, the delivery itself (an OpenAPI 3.1 `webhooks` entry with its signature headers),
webhook dead letters and their replay, and the breakers in health. Every $ref resolves."""

from __future__ import annotations

import json
from typing import Any

from api.openapi import openapi_document
from shared.contracts import CALLBACK_EVENTS
from shared.settings import Settings


def _doc() -> dict[str, Any]:
    return openapi_document("http://127.0.0.1:7071", Settings.model_validate({"ENABLE_SIMULATE_KIND": "true"}))


def test_every_kinds_submission_takes_a_callback() -> None:
    schemas = _doc()["components"]["schemas"]
    requests = [name for name in schemas if name.startswith("JobRequest.")]
    assert requests
    for name in requests:
        assert schemas[name]["properties"]["callback"] == {"$ref": "#/components/schemas/Callback"}, name
    callback = schemas["Callback"]
    assert callback["required"] == ["url"] and callback["properties"]["events"]["items"]["enum"] == list(
        CALLBACK_EVENTS
    )
    params = {p["name"] for p in _doc()["paths"]["/api/jobs"]["post"]["parameters"]}
    assert {"callback_url", "callback_events"} <= params


def test_the_delivery_is_a_webhook_with_its_signature_headers() -> None:
    doc = _doc()
    post = doc["webhooks"]["jobEvent"]["post"]
    assert {p["name"] for p in post["parameters"]} == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/WebhookEvent"}
    event = doc["components"]["schemas"]["WebhookEvent"]
    assert event["properties"]["type"]["enum"] == [f"job.{e}" for e in CALLBACK_EVENTS]
    assert doc["components"]["schemas"]["DeadLetter"]["properties"]["source"]["enum"] == ["job", "poison", "webhook"]
    assert "webhook_breakers" in doc["components"]["schemas"]["Health"]["properties"]


def test_every_reference_resolves() -> None:
    doc = _doc()
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        name = ref.removeprefix("#/components/schemas/")
        assert name in doc["components"]["schemas"], ref
