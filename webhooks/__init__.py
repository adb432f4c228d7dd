"""Webhooks: callback URLs checked against SSRF, signed deliveries to a pinned address, event payloads.

No Durable and no storage here: the jobs layer checks callbacks at submit with `guard`, and the
webhook activities (activities/webhooks.py) build events with `events` and send them with `sender`.
"""
