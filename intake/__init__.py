"""Blueprint of the intake concern."""

import azure.durable_functions as df

blueprint = df.Blueprint()
