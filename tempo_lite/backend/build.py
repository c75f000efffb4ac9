"""The backend roles of one process, built from its configuration (called by the app)."""

from __future__ import annotations

from dataclasses import dataclass

from tempo_lite.backend.leader import KafkaLeaderElection
from tempo_lite.backend.scheduler import BackendScheduler
from tempo_lite.backend.worker import BackendWorker
from tempo_lite.compactor import Compactor
from tempo_lite.config import Config
from tempo_lite.roles import Plan


@dataclass
class BackendRoles:
    election: KafkaLeaderElection | None = None
    scheduler: BackendScheduler | None = None
    worker: BackendWorker | None = None


def build_backend(config: Config, plan: Plan, compactor: Compactor) -> BackendRoles:
    """The backend-scheduler (with its leader election on the WAL's brokers) and the backend-worker the plan
    names."""
    roles = BackendRoles()
    if plan.backend_scheduler:
        wal, sched = config.storage.trace.wal, config.backend_scheduler
        roles.election = KafkaLeaderElection(wal.kafka.brokers, wal.kafka.topic,
                                             session_timeout=float(sched.leader_session_timeout))
        roles.scheduler = BackendScheduler(compactor, roles.election, job_timeout=float(sched.job_timeout),
                                           max_attempts=sched.max_attempts,
                                           cycle=float(config.compactor.compaction.compaction_cycle))
    if plan.backend_worker:
        roles.worker = BackendWorker(compactor, config.backend_worker.schedulers,
                                     poll_interval=float(config.backend_worker.poll_interval))
    return roles
