"""bench.cost's estimate of what the Azure Storage provider adds to devhost's metered Durable requests.

devhost hands an activity's completion to its orchestration in-process (docs/devhost.md). The provider
sends it to a control queue first and deletes it after the episode
(Azure/durabletask 5217032961abf45846f462732a5e2813316e3747,
src/DurableTask.AzureStorage/AzureStorageOrchestrationService.cs, `CompleteTaskActivityWorkItemAsync`:
`controlQueue.AddMessageAsync(responseTaskMessage)`, then `workItemQueue.DeleteMessageAsync`), reads the
history for each episode (OrchestrationSessionManager.cs, `trackingStore.GetHistoryEventsAsync`), and
receives each message it did not send to itself in-process.
"""

from __future__ import annotations

from bench.cost import provider_extra, transaction_price


def test_a_tiny_job_adds_a_completion_message_history_reads_and_at_most_a_receive_per_message() -> None:
    # A tiny job as metered: two episodes, one activity, two Durable puts (its start and its work item).
    extra = provider_extra(episodes=2, activities=1, durable_puts=2)
    low, high = extra["low"], extra["high"]
    assert low[("queue", "durable", "PutMessage")] == 1 and low[("queue", "durable", "DeleteMessage")] == 1
    assert low[("table", "durable", "QueryEntities")] == 2
    assert ("queue", "durable", "GetMessages") not in low
    assert high[("queue", "durable", "GetMessages")] == 3  # the start, the work item, the completion
    assert sum(high.values()) == sum(low.values()) + 3


def test_the_provider_s_extra_requests_cost_queue_prices() -> None:
    extra = provider_extra(episodes=2, activities=1, durable_puts=2)
    usd = {bound: sum(transaction_price(key) * n for key, n in added.items()) for bound, added in extra.items()}
    # Two queue writes at $0.04 per 10,000 and two table reads; then three receives at the queue price.
    assert round(usd["low"] * 1_000_000, 2) == round(2 * 4.0 + 2 * 0.036, 2)
    assert round((usd["high"] - usd["low"]) * 1_000_000, 2) == 12.0
