"""The storage layer: resource names, the client factory and the tables the app keeps.

`names` says what lives where, `clients` makes every Azure Storage client the app uses (sync for
activities and timers, async for HTTP and queue triggers), `indexed_table` is the newest-first
two-row layout that `jobs` (the Jobs table) and `dead_letters` (the DeadLetters table) build on.
Nothing here knows HTTP or Durable Functions.
"""
