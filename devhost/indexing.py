"""Index the app through its own registrations (`app.get_functions()`), as worker indexing does."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import azure.functions as func

from devhost.config import ConfigError, resolve_app_settings
from devhost.ncrontab import CronSchedule, ScheduleError
from devhost.routing import RouteError, RouteTemplate

SUPPORTED_TRIGGERS = {"httpTrigger", "orchestrationTrigger", "activityTrigger", "queueTrigger", "timerTrigger"}
SUPPORTED_BINDINGS = {"http", "durableClient", "blob", "queue"}


class IndexingError(ConfigError):
    """A function or binding is broken: the host refuses to start and says which."""


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass
class FunctionSpec:
    """One indexed function: its trigger, bindings and what the host needs to route and invoke it."""

    name: str
    trigger_type: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    user_function: Callable[..., Any]
    client_param: str | None = None
    route: RouteTemplate | None = None
    methods: tuple[str, ...] = ()  # empty: any method
    auth_level: str = "function"
    queue_name: str | None = None
    schedule: CronSchedule | None = None
    schedule_interval: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trigger_param(self) -> str:
        """The Python parameter the trigger binds to."""
        return str(self.trigger["name"])

    @property
    def is_async(self) -> bool:
        """An `async def` function: the worker runs it on its event loop, not on the thread pool."""
        return inspect.iscoroutinefunction(self.user_function)


def load_app(app_dir: Path, module_name: str = "function_app") -> func.FunctionRegister:
    """Import the app's composition root and return its FunctionApp/DFApp."""
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise IndexingError(f"importing {module_name}.py failed: {type(exc).__name__}: {exc}") from exc
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) != 1:
        raise IndexingError(f"{module_name}.py must define exactly one FunctionApp/DFApp, found {len(apps)}")
    return apps[0]


def index_functions(app: func.FunctionRegister, route_prefix: str) -> list[FunctionSpec]:
    """Validate every function and binding; raise IndexingError naming the culprit."""
    try:
        functions = app.get_functions()
    except Exception as exc:  # the SDK's own validation (duplicate names, missing triggers...)
        raise IndexingError(f"the app's function registrations are invalid: {exc}") from exc
    specs: list[FunctionSpec] = []
    seen: set[str] = set()
    for function in functions:
        name = function.get_function_name()
        trigger_binding = function.get_trigger()
        if not name or trigger_binding is None:
            raise IndexingError(f"function '{name}' has no name or no trigger")
        if name in seen:
            raise IndexingError(f"function '{name}' is defined twice")
        seen.add(name)
        trigger = _plain(trigger_binding.get_dict_repr())
        bindings = [_plain(b.get_dict_repr()) for b in function.get_bindings()]
        spec = FunctionSpec(name, str(trigger["type"]), trigger, bindings, function.get_user_function())
        _check(spec)
        specs.append(spec)
    _check_routes(specs)
    _check_streams(specs)
    return specs


def _check_routes(specs: list[FunctionSpec]) -> None:
    """Refuse what the host refuses at start-up (azure-functions-host ScriptHost.ValidateHttpFunction and
    HttpRoutesConflict): a route in its own space (starting with "admin" or "runtime", case ignored, so
    "administration/x" too), and two functions with the same template (case ignored) and a method in common
    (no methods: all of them)."""
    routed: list[FunctionSpec] = []
    for spec in specs:
        if spec.trigger_type != "httpTrigger" or spec.route is None:
            continue
        template = spec.route.template.strip("/").lower()
        if template.startswith(("admin", "runtime")):
            raise IndexingError(f"function '{spec.name}': the route conflicts with the host's built-in routes")
        for other in routed:
            assert other.route is not None
            if other.route.template.strip("/").lower() != template:
                continue
            if not spec.methods or not other.methods or set(spec.methods) & set(other.methods):
                raise IndexingError(
                    f"function '{spec.name}': the route conflicts with the route defined by function '{other.name}'"
                )
        routed.append(spec)


def _check_streams(specs: list[FunctionSpec]) -> None:
    """With HTTP streams on, every HTTP function must take and answer the extension's types (as the worker)."""
    from devhost import streams

    try:
        if not streams.enabled():
            return
        for spec in specs:
            if spec.trigger_type == "httpTrigger":
                has_return = any(b.get("name") == "$return" for b in spec.bindings)
                streams.check_http_function(spec.name, spec.user_function, spec.trigger_param, has_return)
    except streams.StreamsConfigError as exc:
        raise IndexingError(str(exc)) from exc


def _check(spec: FunctionSpec) -> None:
    where = f"function '{spec.name}'"
    if spec.trigger_type not in SUPPORTED_TRIGGERS:
        raise IndexingError(f"{where}: trigger type '{spec.trigger_type}' is not supported by devhost")
    params = set(inspect.signature(spec.user_function).parameters)
    for binding in spec.bindings:
        btype, bname = binding.get("type"), binding.get("name")
        if btype not in SUPPORTED_TRIGGERS | SUPPORTED_BINDINGS:
            raise IndexingError(f"{where}: binding '{bname}' has unsupported type '{btype}'")
        if bname != "$return" and bname not in params:
            raise IndexingError(
                f"{where}: binding '{bname}' ({btype}) has no parameter of that name in the Python function"
            )
        if btype == "durableClient":
            spec.client_param = str(bname)
    declared = {b.get("name") for b in spec.bindings}
    missing = params - declared
    if missing:
        raise IndexingError(f"{where}: parameters {sorted(missing)} are not declared by any binding")

    if spec.trigger_type == "httpTrigger":
        try:
            spec.route = RouteTemplate.parse(str(spec.trigger.get("route") or spec.name))
        except RouteError as exc:
            raise IndexingError(f"{where}: binding '{spec.trigger_param}' (httpTrigger): {exc}") from exc
        # No methods declared: the host adds no HttpMethodRouteConstraint, so every method matches.
        spec.methods = tuple(str(m).upper() for m in spec.trigger.get("methods") or ())
        spec.auth_level = str(spec.trigger.get("authLevel") or "function").lower()
    elif spec.trigger_type == "queueTrigger":
        queue = spec.trigger.get("queueName")
        if not queue:
            raise IndexingError(f"{where}: binding '{spec.trigger_param}' (queueTrigger) has no queue name")
        try:
            spec.queue_name = resolve_app_settings(str(queue)).lower()
        except ConfigError as exc:
            raise IndexingError(f"{where}: binding '{spec.trigger_param}' (queueTrigger): {exc}") from exc
    elif spec.trigger_type == "timerTrigger":
        schedule = spec.trigger.get("schedule")
        try:
            text = resolve_app_settings(str(schedule))
            if ":" in text and len(text.split()) == 1:
                from devhost.config import parse_timespan

                spec.schedule_interval = parse_timespan(text)
            else:
                spec.schedule = CronSchedule.parse(text)
        except (ConfigError, ScheduleError) as exc:
            raise IndexingError(f"{where}: binding '{spec.trigger_param}' (timerTrigger): {exc}") from exc
