"""Only one backend-scheduler acts at a time: the Kafka group protocol elects it.

Every scheduler joins the consumer group `<wal topic>.scheduler` subscribed to the one-partition topic of the
same name; the broker's group coordinator assigns that partition to exactly one member, and that member is the
leader. When the leader dies its session expires (`backend_scheduler.leader_session_timeout`) and the broker
assigns the partition to a standby; a leader that stops cleanly leaves the group at once. A leader cut off from
the broker loses the partition on its side after the same session timeout (librdkafka's `on_lost`), so two
schedulers believe they lead for at most that long. Nothing is consumed: the assignment is the lease. Why this
and not a lease object in the store: docs/scaling.md, "Backend scheduler".
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import trio
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from tempo_lite.wal.kafka_setup import client_config, ensure_topic

log = logging.getLogger(__name__)

POLL_S = 0.5


class KafkaLeaderElection:
    def __init__(self, brokers: str, wal_topic: str, *, session_timeout: float) -> None:
        self.brokers = brokers
        self.topic = f"{wal_topic}.scheduler"
        self.session_timeout = session_timeout
        self.leading = False  # set from the poll thread's callbacks; read by the scheduler loop
        self._stop = threading.Event()

    # Incremental (cooperative) rebalancing: the callbacks name only the partitions added or taken away.
    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        if not self.leading and any(p.partition == 0 for p in partitions):
            log.info("backend-scheduler: leading")
            self.leading = True

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        if self.leading and any(p.partition == 0 for p in partitions):
            log.info("backend-scheduler: lead revoked, standing by")
            self.leading = False

    def _on_lost(self, _consumer: Any, _partitions: list[Any]) -> None:
        if self.leading:
            log.warning("backend-scheduler: lead lost (no contact with the group coordinator), standing by")
        self.leading = False

    def _member(self) -> None:
        """The group membership, polled in a worker thread until `_stop` (then the group is left)."""
        config = client_config(self.brokers)
        ensure_topic(AdminClient(config), self.topic, 1)
        session_ms = max(1000, int(self.session_timeout * 1000))
        consumer = Consumer({
            **config, "group.id": self.topic, "enable.auto.commit": False, "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": max(100, session_ms // 6),
            # A standby joining must not move the lead (an eager rebalance would revoke and reassign it).
            "partition.assignment.strategy": "cooperative-sticky",
        })
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_lost)
        try:
            while not self._stop.is_set():
                consumer.poll(POLL_S)
        finally:
            self.leading = False
            consumer.close()  # leaves the group: a standby takes over without waiting for the session

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                try:
                    await trio.to_thread.run_sync(self._member, abandon_on_cancel=True)
                except Exception as exc:  # the broker is unreachable: keep trying, never lead meanwhile
                    self.leading = False
                    log.warning("backend-scheduler election failed, retrying: %s", exc)
                await trio.sleep(1.0)
        finally:
            self._stop.set()
            self.leading = False
