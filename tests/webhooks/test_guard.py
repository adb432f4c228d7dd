"""The SSRF guard in-process: which addresses are refused, and a DNS change between submit and delivery.

Name resolution is played through the guard's resolver seam (webhooks.guard.Resolver); the network is
real: the delivery that is allowed goes to a real receiver on loopback, the refused one reaches nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from activities.webhooks import deliver_webhook
from devhost.testing.azurite import Azurite
from jobs.callbacks import checked_callback
from jobs.errors import InvalidRequest
from shared.clock import utc_now
from shared.contracts import JobOutcome, JobStart, WebhookEvent
from shared.settings import Settings, get_settings
from tests.webhooks.receiver import TEST_SECRET, Receiver
from webhooks.events import job_event
from webhooks.guard import CallbackRefused, address_refusal, check_destination, parse_url, redacted

PUBLIC = "93.184.216.34"


def settings(**values: str) -> Settings:
    return Settings.model_validate(values)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("168.63.129.16", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "an address that is not public"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("2002:7f00:1::", "loopback address (embedded"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "metadata address (embedded"),  # 6to4 of 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "(embedded"),  # Teredo, client 192.0.2.45 (documentation)
    ],
)
def test_non_public_addresses_are_refused(address: str, why: str) -> None:
    refusal = address_refusal(address)
    assert refusal is not None and why in refusal


@pytest.mark.parametrize("address", [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8", "2002:808:808::1"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(address) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/x", "https"),
        ("ftp://hooks.example.com/x", "https"),
        ("https:///x", "host"),
        ("https://hooks.example.com/x#frag", "fragment"),
        ("https://hooks.example.com/a b", "spaces"),
        ("https://hooks.example.com:99999/x", "valid URL"),
        ("https://8.8.8.8:0/x", "port 0"),
    ],
)
def test_malformed_or_plain_http_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(CallbackRefused, match=why):
        parse_url(url, settings())


def test_plain_http_only_with_the_setting() -> None:
    assert parse_url("http://hooks.example.com/x?a=1", settings(WEBHOOK_ALLOW_HTTP="true")) == (
        "http",
        "hooks.example.com",
        80,
        "/x?a=1",
    )


def test_a_name_with_any_private_address_is_refused_unless_allowlisted() -> None:
    def resolve(host: str, port: int) -> list[str]:
        return [PUBLIC, "10.0.0.7"]

    with pytest.raises(CallbackRefused, match="private"):
        check_destination("https://hooks.example.com/x", settings(), resolve)
    allowed = check_destination(
        "https://hooks.example.com/x", settings(WEBHOOK_ALLOWED_HOSTS="other.test, HOOKS.example.com"), resolve
    )
    assert allowed.address == PUBLIC and allowed.host_header == "hooks.example.com"


def test_logs_see_no_userinfo_or_query() -> None:
    assert redacted("https://user:pw@hooks.example.com:8443/p?token=x") == "https://hooks.example.com:8443/p"


def test_submit_refuses_a_name_resolving_to_loopback_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as refused:
        asyncio.run(
            checked_callback("https://hooks.example.com/x", None, settings(), resolve=lambda host, port: ["127.0.0.1"])
        )
    assert refused.value.errors == [
        {"field": "callback.url", "message": "the callback host resolves to a loopback address"}
    ]


# --- delivery after a DNS change --------------------------------------------------------------------


@pytest.fixture
def app_settings(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("WEBHOOK_SECRET", TEST_SECRET)
    monkeypatch.setenv("WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.delenv("WEBHOOK_ALLOWED_HOSTS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    try:
        yield server
    finally:
        server.stop()


def _event(url: str) -> WebhookEvent:
    job_id = uuid.uuid4().hex
    start: JobStart = {
        "job_id": job_id,
        "kind": "simulate",
        "input_ref": None,
        "input_content_type": None,
        "options": {},
        "deadline_at": None,
        "submitted_at": "2026-12-01T00:00:00.000000Z",
    }
    outcome: JobOutcome = {"status": "COMPLETED", "summary": {"chunks": 1}, "error": None}
    return job_event(start, url, "completed", outcome, 1, 1, utc_now(), None)


def test_a_name_that_resolved_public_at_submit_and_loopback_at_delivery_is_not_called(
    app_settings: None, receiver: Receiver
) -> None:
    url = f"http://hooks.example.test:{receiver.port}/hook"
    # At submit the name was public: accepted.
    accepted = asyncio.run(checked_callback(url, None, get_settings(), resolve=lambda host, port: [PUBLIC]))
    assert accepted["url"] == url
    # By delivery its DNS answers 127.0.0.1 (rebinding): refused before any connection, for good.
    verdict = deliver_webhook(_event(url), 1, resolve=lambda host, port: ["127.0.0.1"])
    assert verdict["outcome"] == "refused" and "loopback" in verdict["reason"]
    assert receiver.count() == 0


def test_the_sender_connects_to_the_checked_address_and_names_the_host(
    app_settings: None, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Allowlisted, the same name is delivered: to the address the guard checked (the receiver on 127.0.0.1),
    with the name in Host, and no second lookup (the resolver answers once, then an address that would fail)."""
    monkeypatch.setenv("WEBHOOK_ALLOWED_HOSTS", "hooks.example.test")
    get_settings.cache_clear()
    answers = [["127.0.0.1"]]

    def resolve(host: str, port: int) -> list[str]:
        return answers.pop(0) if answers else ["192.0.2.1"]  # TEST-NET: nothing answers there

    url = f"http://hook%40user:s3cret@hooks.example.test:{receiver.port}/hook?tenant=7"
    verdict = deliver_webhook(_event(url), 1, resolve=resolve)
    assert verdict["outcome"] == "delivered", verdict
    (delivery,) = receiver.deliveries
    assert delivery.verified and delivery.headers["host"] == f"hooks.example.test:{receiver.port}"
    # The URL's userinfo is Basic authorization (hook@user:s3cret), never part of the request line.
    assert delivery.headers["authorization"] == "Basic aG9va0B1c2VyOnMzY3JldA=="
    assert delivery.path == "/hook?tenant=7"
