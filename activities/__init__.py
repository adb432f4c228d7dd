"""Blueprint of the activities concern."""

import azure.durable_functions as df

blueprint = df.Blueprint()
