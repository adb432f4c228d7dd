"""Host configuration as the Functions host reads it: host.json plus local.settings.json."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d{1,7}))?$")
_APP_SETTING = re.compile(r"%([^%]+)%")
_HUB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,44}$")


class ConfigError(Exception):
    """The app's configuration cannot be used; the host refuses to start."""


def parse_timespan(value: str | int | float) -> float:
    """Seconds in a .NET TimeSpan string such as `00:05:00` or `1.02:00:00.5`."""
    if isinstance(value, int | float):
        return float(value)
    match = _TIMESPAN.match(value.strip())
    if not match:
        raise ConfigError(f"invalid TimeSpan {value!r} (expected [d.]hh:mm:ss[.fffffff])")
    seconds = int(match["days"] or 0) * 86400 + int(match["h"]) * 3600 + int(match["m"]) * 60 + int(match["s"])
    return seconds + (float("0." + match["f"]) if match["f"] else 0.0)


def resolve_app_settings(value: str, env: dict[str, str] | None = None) -> str:
    """Replace %NAME% binding expressions with app settings, as the host does."""
    source = os.environ if env is None else env

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in source:
            raise ConfigError(f"app setting '{name}' is referenced as %{name}% but is not set")
        return source[name]

    return _APP_SETTING.sub(replace, value)


@dataclass
class HostConfig:
    """What devhost honours from host.json and local settings."""

    app_dir: Path
    route_prefix: str = "api"
    hub_name: str = "TestHubName"
    partition_count: int = 4
    max_concurrent_activities: int = 10
    max_concurrent_orchestrations: int = 10
    max_queue_polling_interval: float = 30.0
    control_queue_batch_size: int = 32
    queue_batch_size: int = 16
    queue_new_batch_threshold: int = 8
    queue_visibility_timeout: float = 0.0
    queue_max_dequeue_count: int = 5
    queue_max_polling_interval: float = 60.0
    queue_message_encoding: str = "base64"
    function_timeout: float | None = 30 * 60.0
    worker_process_count: int = 1
    worker_thread_count: int = 4
    # Test-only overrides (environment variables, never set in Azure): the App Service front end's
    # 230 s limit on an HTTP response, and the 10 min a queue listener hides a message it runs.
    http_response_limit: float = 230.0
    # Kestrel's MaxRequestBodySize as the host sets it: 100 MB (ScriptConstants.DefaultMaxRequestBodySize),
    # or FUNCTIONS_REQUEST_BODY_SIZE_LIMIT when it parses as a long (HttpRequestBodySizeMiddleware).
    request_body_limit: int = 104857600
    queue_listener_visibility: float = 600.0
    http_port: int = 7071
    function_keys: dict[str, str] = field(default_factory=dict)
    system_key: str = ""
    settings_file: Path | None = None
    raw_host_json: dict[str, Any] = field(default_factory=dict)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} must hold a JSON object")
    return data


def load_local_settings(app_dir: Path) -> tuple[dict[str, Any], Path | None]:
    """local.settings.json, falling back to the committed sample."""
    for name in ("local.settings.json", "local.settings.sample.json"):
        path = app_dir / name
        if path.exists():
            return _load_json(path), path
    return {}, None


def export_values(values: dict[str, Any]) -> None:
    """Export `Values` as environment variables. Variables already set win, so tests and CI can override."""
    for key, value in values.items():
        if key not in os.environ and value is not None:
            os.environ[key] = str(value)


def load_config(app_dir: Path) -> HostConfig:
    """Read local settings (exporting Values) and host.json, resolving %app settings%."""
    settings, settings_path = load_local_settings(app_dir)
    values = settings.get("Values") or {}
    if not isinstance(values, dict):
        raise ConfigError("local settings: 'Values' must be an object")
    export_values(values)

    host_path = app_dir / "host.json"
    if not host_path.exists():
        raise ConfigError(f"no host.json in {app_dir}")
    host = _load_json(host_path)
    if host.get("version") != "2.0":
        raise ConfigError('host.json: "version" must be "2.0"')

    config = HostConfig(app_dir=app_dir, settings_file=settings_path, raw_host_json=host)
    if "functionTimeout" in host:
        config.function_timeout = (
            None if host["functionTimeout"] in (None, "-1") else parse_timespan(host["functionTimeout"])
        )
    extensions = host.get("extensions") or {}
    http = extensions.get("http") or {}
    if "routePrefix" in http:
        config.route_prefix = str(http["routePrefix"]).strip("/")

    durable = extensions.get("durableTask") or {}
    hub = durable.get("hubName") or os.environ.get("WEBSITE_SITE_NAME") or "TestHubName"
    config.hub_name = resolve_app_settings(str(hub))
    if not _HUB_NAME.match(config.hub_name):
        raise ConfigError(
            f"task hub name {config.hub_name!r} is invalid: 3-45 letters or digits, starting with a letter"
        )
    config.max_concurrent_activities = int(durable.get("maxConcurrentActivityFunctions", 10))
    config.max_concurrent_orchestrations = int(durable.get("maxConcurrentOrchestratorFunctions", 10))
    provider = durable.get("storageProvider") or {}
    config.partition_count = int(provider.get("partitionCount", 4))
    if not 1 <= config.partition_count <= 16:
        raise ConfigError("durableTask.storageProvider.partitionCount must be 1-16")
    if "maxQueuePollingInterval" in provider:
        config.max_queue_polling_interval = parse_timespan(provider["maxQueuePollingInterval"])
    config.control_queue_batch_size = int(provider.get("controlQueueBatchSize", 32))

    queues = extensions.get("queues") or {}
    config.queue_batch_size = int(queues.get("batchSize", 16))
    if not 1 <= config.queue_batch_size <= 32:
        raise ConfigError("queues.batchSize must be 1-32")
    config.queue_new_batch_threshold = int(queues.get("newBatchThreshold", config.queue_batch_size // 2))
    config.queue_max_dequeue_count = int(queues.get("maxDequeueCount", 5))
    if "visibilityTimeout" in queues:
        config.queue_visibility_timeout = parse_timespan(queues["visibilityTimeout"])
    if "maxPollingInterval" in queues:
        config.queue_max_polling_interval = parse_timespan(queues["maxPollingInterval"])
    encoding = str(queues.get("messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise ConfigError("queues.messageEncoding must be 'base64' or 'none'")
    config.queue_message_encoding = encoding

    config.worker_process_count = max(1, int(os.environ.get("FUNCTIONS_WORKER_PROCESS_COUNT", "1")))
    config.worker_thread_count = _thread_count(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT"))
    config.http_response_limit = _positive_seconds("DEVHOST_HTTP_RESPONSE_LIMIT", 230.0)
    config.queue_listener_visibility = _positive_seconds("DEVHOST_QUEUE_LISTENER_VISIBILITY", 600.0)
    config.request_body_limit = _body_limit(os.environ.get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"))
    host_section = settings.get("Host") or {}
    config.http_port = int(host_section.get("LocalHttpPort", 7071))
    devhost_section = settings.get("DevHost") or {}
    config.function_keys = {str(k): str(v) for k, v in (devhost_section.get("FunctionKeys") or {}).items()}
    config.system_key = str(devhost_section.get("SystemKey") or "")
    return config


def _thread_count(value: str | None) -> int:
    """PYTHON_THREADPOOL_THREAD_COUNT as the Python worker reads it.

    Unset, the worker (Python 3.9+) passes max_workers=None, so the pool gets ThreadPoolExecutor's
    default of min(32, CPUs + 4) (`Dispatcher._get_sync_tp_max_workers`); below 1 is an error there.
    """
    if value is None or not value.strip():
        return min(32, (os.cpu_count() or 1) + 4)
    try:
        count = int(value)
    except ValueError as exc:
        raise ConfigError(f"PYTHON_THREADPOOL_THREAD_COUNT must be an integer, not {value!r}") from exc
    if count < 1:
        raise ConfigError("PYTHON_THREADPOOL_THREAD_COUNT must be at least 1")
    return count


def _body_limit(value: str | None) -> int:
    """FUNCTIONS_REQUEST_BODY_SIZE_LIMIT as `HttpRequestBodySizeMiddleware` reads it.

    The host takes it when `long.TryParse` succeeds and otherwise keeps Kestrel's 100 MB default silently;
    devhost refuses a value it cannot read, so a typo does not go unnoticed locally.
    """
    if value is None or not value.strip():
        return 104857600
    try:
        limit = int(value.strip())
    except ValueError as exc:
        raise ConfigError(f"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT must be a number of bytes, not {value!r}") from exc
    if limit < 0:
        raise ConfigError("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT must not be negative")
    return limit


def _positive_seconds(name: str, default: float) -> float:
    """A devhost test override from the environment (seconds or a .NET TimeSpan), or the Azure default."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parse_timespan(value)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    if seconds <= 0:
        raise ConfigError(f"{name} must be positive")
    return seconds
