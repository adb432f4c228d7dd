"""Blueprint of the maintenance concern."""

import azure.durable_functions as df

blueprint = df.Blueprint()
