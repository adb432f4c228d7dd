"""Application settings, read once from the environment (app settings in Azure, `Values` locally).

Every setting the app reads is a field here, so the infrastructure tests can check that the
function app module sets each one (see tests/infra).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _running_in_azure() -> bool:
    # The platform sets these on every Functions instance; they are never set by devhost.
    return bool(os.environ.get("WEBSITE_INSTANCE_ID") or os.environ.get("CONTAINER_NAME_AZURE"))


class Settings(BaseSettings):
    """The app's settings. Field aliases are the app-setting names."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    # Storage: a connection string locally (Azurite), service URIs + managed identity in Azure.
    storage_connection_string: str | None = Field(default=None, alias="AzureWebJobsStorage")
    blob_service_uri: str | None = Field(default=None, alias="AzureWebJobsStorage__blobServiceUri")
    queue_service_uri: str | None = Field(default=None, alias="AzureWebJobsStorage__queueServiceUri")
    table_service_uri: str | None = Field(default=None, alias="AzureWebJobsStorage__tableServiceUri")
    storage_client_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID"),
    )

    # Public contract
    public_base_url: str | None = Field(default=None, alias="PUBLIC_BASE_URL")
    max_json_body_bytes: int = Field(default=1024 * 1024, gt=0, alias="MAX_JSON_BODY_BYTES")
    max_raw_body_bytes: int = Field(default=100 * 1024 * 1024, gt=0, alias="MAX_RAW_BODY_BYTES")
    upload_url_ttl_minutes: int = Field(default=15, ge=1, le=24 * 60, alias="UPLOAD_URL_TTL_MINUTES")

    # Job kinds
    enable_simulate_kind: bool = Field(default=False, alias="ENABLE_SIMULATE_KIND")

    # Orchestration shape
    max_parallel_chunks: int = Field(default=8, ge=1, le=64, alias="MAX_PARALLEL_CHUNKS")
    chunk_target_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, alias="CHUNK_TARGET_BYTES")
    chunks_per_sub_orchestration: int = Field(default=50, ge=1, le=200, alias="CHUNKS_PER_SUB_ORCHESTRATION")
    # Bigger inputs get bigger chunks rather than more of them, so a job's history has a bounded size.
    max_chunks_per_job: int = Field(default=1000, ge=1, le=10_000, alias="MAX_CHUNKS_PER_JOB")
    # Input bytes one job may have in chunks at once: with 8 MiB chunks, 4 of them (activities.plan.
    # chunks_in_flight). What a chunk holds in memory grows with the bytes it reads (up to the window a streamed
    # read holds, for the kinds that stream their chunks), so this bounds a job's memory where
    # MAX_PARALLEL_CHUNKS alone bounds its count; jobs without an input are not limited by it.
    max_chunk_bytes_in_flight: int = Field(default=32 * 1024 * 1024, ge=1024, alias="MAX_CHUNK_BYTES_IN_FLIGHT")
    # Chunk size of the kinds that stream their chunks (JobKind.streams_chunks: csv-report), whose memory does
    # not grow with the chunk: fewer, larger chunks, so fewer waves and steps. 0, or anything not above
    # CHUNK_TARGET_BYTES: the same size as every kind (activities.plan.streamed_target).
    chunk_target_bytes_streamed: int = Field(default=0, ge=0, alias="CHUNK_TARGET_BYTES_STREAMED")
    # A job of several chunks whose kind estimates its work at this many seconds or less runs whole in its
    # first step (activities.whole_job); one-chunk jobs always do. 0: only one-chunk jobs.
    whole_run_max_seconds: float = Field(default=0.5, ge=0, le=60, alias="WHOLE_RUN_MAX_SECONDS")

    # Retries (exponential backoff with deterministic jitter, on durable timers)
    retry_first_interval_seconds: float = Field(default=1.0, gt=0, alias="RETRY_FIRST_INTERVAL_SECONDS")
    retry_backoff_coefficient: float = Field(default=2.0, ge=1, alias="RETRY_BACKOFF_COEFFICIENT")
    retry_max_interval_seconds: float = Field(default=60.0, gt=0, alias="RETRY_MAX_INTERVAL_SECONDS")
    retry_max_attempts: int = Field(default=5, ge=1, le=20, alias="RETRY_MAX_ATTEMPTS")

    # The Durable task hub (host.json reads it as %TASK_HUB_NAME%); admission state is kept per task hub.
    task_hub_name: str = Field(default="longrun", min_length=1, alias="TASK_HUB_NAME")

    # Admission control (jobs/admission.py): how many jobs run at once, per client, and how many may wait.
    # The defaults admit at once for any ordinary load; lower them to make lanes and caps bite.
    max_running_jobs: int = Field(default=1000, ge=1, le=100_000, alias="MAX_RUNNING_JOBS")
    max_running_jobs_per_client: int = Field(default=1000, ge=1, le=100_000, alias="MAX_RUNNING_JOBS_PER_CLIENT")
    max_pending_jobs: int = Field(default=100_000, ge=1, le=10_000_000, alias="MAX_PENDING_JOBS")
    # Weighted fair sharing between the lanes, high:normal:low.
    lane_weights: str = Field(default="6:3:1", pattern=r"^[1-9][0-9]{0,2}:[1-9][0-9]{0,2}:[1-9][0-9]{0,2}$",
                              alias="LANE_WEIGHTS")  # fmt: skip
    # The request header naming the client (set by the gateway in Azure; see docs/operations.md).
    client_id_header: str = Field(default="X-Client-Id", min_length=1, alias="CLIENT_ID_HEADER")
    # The header the dashboard and Swagger UI send the key the user types in (web/key.js): the function
    # key's own header, or a gateway's (Ocp-Apim-Subscription-Key behind API Management; main.bicep sets it).
    api_key_header: Literal["x-functions-key", "Ocp-Apim-Subscription-Key"] = Field(
        default="x-functions-key", alias="API_KEY_HEADER"
    )
    # How often a waiting job checks its admission itself, should an admission notice be lost.
    admission_recheck_seconds: int = Field(default=60, ge=1, le=3600, alias="ADMISSION_RECHECK_SECONDS")

    # Push: the job event stream and long-poll (jobs/events.py). A stream reads the job's status once per
    # poll interval, writes a heartbeat comment when it has been quiet that long, and ends on its own before
    # any gateway or the Functions front end (230 s) would cut it; the client resumes with Last-Event-ID.
    sse_poll_seconds: float = Field(default=2.0, gt=0, le=30, alias="SSE_POLL_SECONDS")
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0, le=60, alias="SSE_HEARTBEAT_SECONDS")
    sse_max_stream_seconds: float = Field(default=90.0, gt=0, le=200, alias="SSE_MAX_STREAM_SECONDS")

    # Retention
    retention_days: int = Field(default=7, ge=1, alias="RETENTION_DAYS")
    deadletter_retention_days: int = Field(default=30, ge=1, alias="DEADLETTER_RETENTION_DAYS")
    # NCRONTAB (with seconds) of the retention timer; the host reads it as %RETENTION_SCHEDULE%.
    retention_schedule: str = Field(default="0 15 3 * * *", alias="RETENTION_SCHEDULE")

    # Webhooks (callbacks on submit). The secret signs every delivery (Standard Webhooks, `whsec_<base64>`);
    # in Azure it is a Key Vault reference. Plain http and the allowlist exist for local tests only.
    webhook_secret: SecretStr | None = Field(default=None, alias="WEBHOOK_SECRET")
    webhook_allow_http: bool = Field(default=False, alias="WEBHOOK_ALLOW_HTTP")
    # Comma-separated host names (or IP literals) exempt from the private-address check.
    webhook_allowed_hosts: str = Field(default="", alias="WEBHOOK_ALLOWED_HOSTS")
    webhook_breaker_failures: int = Field(default=5, ge=1, le=1000, alias="WEBHOOK_BREAKER_FAILURES")
    webhook_breaker_open_seconds: float = Field(default=60.0, gt=0, le=86_400, alias="WEBHOOK_BREAKER_OPEN_SECONDS")
    # At most one `progress` event per job this often (the job orchestration's clock).
    webhook_progress_seconds: float = Field(default=30.0, gt=0, le=86_400, alias="WEBHOOK_PROGRESS_SECONDS")

    @property
    def webhook_allowlist(self) -> frozenset[str]:
        """The allowlisted callback hosts, lower case."""
        return frozenset(h.strip().lower().strip("[]") for h in self.webhook_allowed_hosts.split(",") if h.strip())

    @model_validator(mode="after")
    def _refuse_unsafe_azure_config(self) -> Settings:
        if not _running_in_azure():
            return self
        if self.storage_connection_string and "AccountKey=" in self.storage_connection_string:
            raise ValueError("shared-key storage connection strings are not allowed in Azure; use identity")
        if self.enable_simulate_kind:
            raise ValueError("ENABLE_SIMULATE_KIND must be false in Azure")
        if self.webhook_allow_http:
            raise ValueError("WEBHOOK_ALLOW_HTTP must be false in Azure: callbacks are https only")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, validated once."""
    return Settings()
