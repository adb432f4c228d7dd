"""Composition root: set up telemetry, build the Durable Functions app and register each concern's blueprint."""

import gc
import sys

import azure.durable_functions as df
import azure.functions as func

from activities import blueprint as activities_blueprint
from admission import blueprint as admission_blueprint
from api import blueprint as api_blueprint
from intake import blueprint as intake_blueprint
from intake.webhook_events import blueprint as webhook_events_blueprint
from maintenance import blueprint as maintenance_blueprint
from orchestrators import blueprint as orchestrators_blueprint
from shared import observability

# Before any function runs: every span, event and metric of this worker process goes where it says.
# (Tracers and instruments are looked up when used, so importing the blueprints first loses nothing.)
observability.configure()

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in (
    api_blueprint,
    intake_blueprint,
    webhook_events_blueprint,
    orchestrators_blueprint,
    activities_blueprint,
    maintenance_blueprint,
    admission_blueprint,
):
    app.register_functions(blueprint)

# What the imports built lives as long as the worker: freeze it out of the cyclic collector's passes. A full
# pass walked those ~100,000 objects again (about 65 ms of CPU) a few times a minute under load (issue #15).
gc.freeze()

# The API's event loop and the activities' threads share one GIL. A thread that wants it back (a request
# whose storage answer came in) waits for the holder to give it up, at the latest after the switch interval:
# 5 ms by default, longer than the Python part of a storage call. 1 ms took about 2 ms off a submit's p50
# under load (17.2 against 19.4 ms, two alternated pairs) with the same throughput (docs/benchmarks.md,
# "Cost per job", stop 19).
GIL_SWITCH_INTERVAL_SECONDS = 0.001
sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
