"""Fixtures of the activity tests: the settings pointed at the session's Azurite, with 1 KB chunks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient

from activities.resources import ensure_local_resources
from devhost.testing.azurite import Azurite
from shared.settings import get_settings


@pytest.fixture
def blobs(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[BlobServiceClient]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("CHUNK_TARGET_BYTES", "1024")
    monkeypatch.setenv("WHOLE_RUN_MAX_SECONDS", "0")  # the 1 KB chunks of these tests would all run whole
    get_settings.cache_clear()
    ensure_local_resources(get_settings())
    yield BlobServiceClient.from_connection_string(azurite.connection_string)
    get_settings.cache_clear()
