"""Blueprint of the orchestrators concern."""

import azure.durable_functions as df

blueprint = df.Blueprint()
