"""The application layer: what the API, the queue intake and the timers ask of jobs.

`submit` (validate against the kind, arbitrate idempotency, store the input, start), `query` (a job's
state: its row reconciled with Durable's status), `cancel`, `replay` (a dead letter as a new job),
`uploads` and `sweep` (orphans a crash left). `durable` is the only module that talks to the Durable
client. Everything here raises the domain errors of `errors`, never HTTP problems, and never imports
azure.functions: the API turns the errors into RFC 9457 problems, the intake into retries and dead letters.
"""
