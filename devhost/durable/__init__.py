"""Durable Functions, the way the Azure Storage provider runs them: history, replay, queues, tables."""
