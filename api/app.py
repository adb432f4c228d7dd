"""The API's blueprint; each resource module registers its routes on it."""

import azure.durable_functions as df

blueprint = df.Blueprint()
