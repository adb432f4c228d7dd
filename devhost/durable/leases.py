"""Partition leases: a host works on a control-queue partition only while it holds that partition's lease.

As DurableTask.AzureStorage's blob partition manager does (container `{hub}-leases`, one blob per control
queue, `LeaseInterval` 30 s renewed every `LeaseRenewInterval` 10 s, retried every `LeaseAcquireInterval`
10 s): two hosts on one task hub never process the same partition, and after a crash a host (the same one
restarted, or another) takes a partition over only once the dead host's lease has expired.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob.aio import BlobLeaseClient, BlobServiceClient

log = logging.getLogger("devhost.durable")


class PartitionLeases:
    """Acquires, renews and releases one blob lease per control-queue partition."""

    def __init__(self, blobs: BlobServiceClient, hub: str, partitions: int, duration: int) -> None:
        self.duration = duration  # seconds; 0 turns leases off (every partition is owned at once)
        self.container = blobs.get_container_client(f"{hub.lower()}-leases")
        self.names = [f"default/{hub.lower()}-control-{i:02d}" for i in range(partitions)]
        self.lease_id = str(uuid.uuid4())  # this host's identity as lease owner
        self.owned = [duration == 0] * partitions
        self._leases: dict[int, BlobLeaseClient] = {}

    @property
    def renew_interval(self) -> float:
        """DTFx renews a 30 s lease every 10 s."""
        return self.duration / 3

    def owns(self, partition: int) -> bool:
        """Whether this host may work on the partition now."""
        return self.owned[partition]

    async def acquire(self, partition: int) -> bool:
        """One attempt to take the partition's lease; False while another host (live or dead) holds it."""
        if self.duration == 0 or self.owned[partition]:
            return True
        blob = self.container.get_blob_client(self.names[partition])
        try:
            await self.container.create_container()
        except ResourceExistsError:
            pass
        try:
            await blob.upload_blob(b"", overwrite=False)
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            if exc.status_code != 412:  # a leased blob cannot be overwritten; it exists, which is all we need
                raise
        lease = BlobLeaseClient(blob, lease_id=self.lease_id)
        try:
            await lease.acquire(lease_duration=self.duration)
        except HttpResponseError as exc:
            if exc.status_code == 409:  # LeaseAlreadyPresent: held by a host, or by one that died lately
                return False
            raise
        self._leases[partition] = lease
        self.owned[partition] = True
        log.info("Acquired the lease on partition %s", self.names[partition])
        return True

    async def renew(self, partition: int) -> None:
        """Extend the lease; on failure the partition is given up until acquired again."""
        lease = self._leases.get(partition)
        if lease is None:
            return
        try:
            await lease.renew()
        except AzureError as exc:
            log.warning("lost the lease on partition %s: %s", self.names[partition], exc)
            self.owned[partition] = False
            self._leases.pop(partition, None)

    async def release_all(self) -> None:
        """Give the partitions up at a clean shutdown, so the next host need not wait for them to expire."""
        leases, self._leases = self._leases, {}
        for partition, lease in leases.items():
            self.owned[partition] = False
            try:
                await lease.release()
            except AzureError as exc:
                log.debug("could not release partition lease %s: %s", self.names[partition], exc)


async def keep_leased(
    leases: PartitionLeases, partition: int, stopping: asyncio.Event, on_acquired: Callable[[], None]
) -> None:
    """Hold a partition: acquire it (retrying every renew interval, as DTFx's acquire interval) and renew."""
    while not stopping.is_set():
        try:
            if leases.owns(partition):
                await leases.renew(partition)
            elif await leases.acquire(partition):
                on_acquired()
        except AzureError as exc:
            log.warning("partition lease %s: %s", leases.names[partition], exc)
        try:
            await asyncio.wait_for(stopping.wait(), leases.renew_interval)
        except TimeoutError:
            pass
