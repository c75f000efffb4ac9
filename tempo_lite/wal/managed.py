"""The managed WAL: tempo-lite runs a Kafka-protocol broker as its own child process and uses it as `kafka`.

`wal.backend: managed` runs any broker from a command template; `wal.backend: redpanda` is a preset of
it (`broker_command.py`). `factory.open_wal` owns one nursery holding the `BrokerSupervisor`
(`broker_supervisor.py`: start, wait until the broker answers, restart with backoff when it dies, its output
forwarded to the log, stop at shutdown) and the kafka backend's delivery loop, and wraps the kafka backend
in `ManagedWal`: while the broker restarts, it makes the consumers (live-store, block-builder) wait instead
of failing, and appends answer `Unavailable` (503). See docs/wal.md, section "Managed broker".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import trio
from confluent_kafka import KafkaException

from tempo_lite.errors import Unavailable
from tempo_lite.wal import WalEntry, WalRecord, WriteAheadLog
from tempo_lite.wal.broker_supervisor import BrokerSupervisor
from tempo_lite.wal.wrapper import WalWrapper

log = logging.getLogger(__name__)

T = TypeVar("T")


class ManagedWal(WalWrapper[WriteAheadLog]):
    """The kafka backend on the supervised broker; consumers wait out broker restarts instead of failing."""

    def __init__(self, kafka: WriteAheadLog, supervisor: BrokerSupervisor, outage_timeout: float) -> None:
        super().__init__(kafka)
        self.supervisor = supervisor
        self.outage_timeout = outage_timeout

    async def append(self, entries: Sequence[WalEntry]) -> list[int]:
        if not self.supervisor.up and entries:
            raise Unavailable(f"the managed WAL broker ({self.supervisor.command.name}) is restarting; retry later")
        # Records already handed to the producer are retried by librdkafka until the broker is back.
        return await self.inner.append(entries)

    async def read(self, partition: int, start_offset: int, max_records: int) -> list[WalRecord]:
        return await self._retrying(lambda: self.inner.read(partition, start_offset, max_records))

    async def wait_for_records(self, partition: int, offset: int, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            try:
                return await self.inner.wait_for_records(partition, offset, timeout)
            except (Unavailable, KafkaException):
                if self.closing:
                    raise
                await self.supervisor.wait_up()
        return False

    async def commit(self, group: str, partition: int, next_offset: int) -> None:
        await self._retrying(lambda: self.inner.commit(group, partition, next_offset))

    async def end_offset(self, partition: int) -> int:
        return await self._retrying(lambda: self.inner.end_offset(partition))

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call`, retried while the broker is down and for up to `outage_timeout` once it is back."""
        deadline: float | None = None
        delay = 0.05
        while True:
            try:
                return await call()
            except (Unavailable, KafkaException) as exc:
                if self.closing:
                    raise
                if not self.supervisor.up:
                    log.info("managed WAL: waiting for the broker to come back (%s)", exc)
                    await self.supervisor.wait_up()
                    deadline = None
                    continue
                now = trio.current_time()
                deadline = now + self.outage_timeout if deadline is None else deadline
                if now >= deadline:
                    raise
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)
