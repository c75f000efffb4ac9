"""`-target`: which roles one process runs, and the one place that decides which components that means.

`all` (the default) is one process doing everything on whatever WAL and store are configured. Any other
role set is part of a split deployment: the processes share a Kafka-protocol WAL and an object store, so a
role that reads or writes either refuses to start on a WAL or store other processes cannot see
(`check_shared`). docs/scaling.md describes each role.
"""

from __future__ import annotations

from dataclasses import dataclass

from tempo_lite.config import Config
from tempo_lite.errors import ConfigError

ROLES = (
    "distributor", "live-store", "block-builder", "querier", "query-frontend", "compactor", "backend-scheduler",
    "backend-worker", "metrics-generator",
)
ALL = "all"
# Roles whose work reaches the WAL (append, consume) and the object store (blocks, block list).
_WAL_ROLES = frozenset({"distributor", "live-store", "block-builder", "metrics-generator"})
_STORE_ROLES = frozenset({"block-builder", "querier", "query-frontend", "compactor", "backend-scheduler",
                          "backend-worker"})


@dataclass(frozen=True)
class Plan:
    """The components one process runs for its roles."""

    roles: frozenset[str]
    all_in_one: bool  # `all`: today's single process (its own live-store feeds its own block-builder)
    wal: bool  # opens the WAL
    store: bool  # opens the object store
    distributor: bool  # receivers + distributor (appends to the WAL)
    live_store: bool  # consumes its partitions and serves them (in-process, or over /internal/live/)
    block_builder: bool  # consumes every partition and writes blocks (commits after meta.json)
    compactor: bool  # compaction and retention, planned and executed in this process (all, compactor)
    query: bool  # the query API: blocks plus recent data (own live-store, or remote live-stores)
    generator: bool  # the metrics-generator (observes every partition)
    # query-frontend without querier, `query_frontend.queriers` set: search and trace-by-ID jobs go to those
    # querier processes (frontend/sharding.py) instead of running here.
    sharding: bool = False
    backend_scheduler: bool = False  # plans compactor jobs for backend-workers while it leads (backend/)
    backend_worker: bool = False  # executes the jobs a backend-scheduler hands out

    @property
    def uses_compactor(self) -> bool:
        return self.compactor or self.backend_scheduler or self.backend_worker

    @property
    def name(self) -> str:
        return ALL if self.all_in_one else ",".join(r for r in ROLES if r in self.roles)


def parse_target(target: str) -> frozenset[str]:
    """`-target` -> role names; `all` anywhere means every role in one process."""
    names = [n.strip() for n in target.split(",") if n.strip()]
    if not names:
        raise ConfigError("-target names no role (expected all or a comma-separated list of: " + ", ".join(ROLES) + ")")
    unknown = [n for n in names if n != ALL and n not in ROLES]
    if unknown:
        raise ConfigError(f"-target: unknown role {unknown[0]!r} (expected all or any of: {', '.join(ROLES)})")
    return frozenset(ROLES) if ALL in names else frozenset(names)


def plan_for(config: Config, target: str | None = None) -> Plan:
    """The components for `target` (else `config.target`), after checking the WAL and store can be shared."""
    roles = parse_target(target if target is not None else config.target)
    all_in_one = roles == frozenset(ROLES)
    plan = Plan(
        roles=roles,
        all_in_one=all_in_one,
        wal=all_in_one or bool(roles & _WAL_ROLES),
        store=all_in_one or bool(roles & _STORE_ROLES),
        distributor="distributor" in roles,
        live_store="live-store" in roles,
        block_builder="block-builder" in roles,
        compactor=all_in_one or "compactor" in roles,
        query=bool(roles & {"querier", "query-frontend"}),
        # In one process the generator is a config switch; as a role, naming it runs it.
        generator=config.metrics_generator.enabled if all_in_one else "metrics-generator" in roles,
        sharding=(not all_in_one and "query-frontend" in roles and "querier" not in roles
                  and bool(config.query_frontend.queriers)),
        backend_scheduler=not all_in_one and "backend-scheduler" in roles,
        backend_worker=not all_in_one and "backend-worker" in roles,
    )
    if not all_in_one:
        check_shared(config, plan)
    return plan


def check_shared(config: Config, plan: Plan) -> None:
    """A split role refuses a WAL or store the other processes cannot see: one line saying why."""
    wal = config.storage.trace.wal.backend
    if plan.roles & _WAL_ROLES and wal == "embedded":
        raise ConfigError(
            f"-target {plan.name} needs a WAL every process shares, but storage.trace.wal.backend is embedded "
            "(a SQLite file only this process reads): use kafka, managed or redpanda (docs/scaling.md)"
        )
    store = config.storage.trace.backend
    if plan.roles & _STORE_ROLES:
        if store == "memory":
            raise ConfigError(
                f"-target {plan.name} needs an object store every process shares, but storage.trace.backend is "
                "memory (this process only): use s3, gcs, azure or a shared local directory (docs/scaling.md)"
            )
        if store == "local" and not config.storage.trace.local.shared:
            raise ConfigError(
                f"-target {plan.name} needs an object store every process shares, but storage.trace.backend is "
                "local: use s3, gcs or azure, or set storage.trace.local.shared: true when every process "
                "mounts the same directory (docs/scaling.md)"
            )
    if plan.backend_scheduler and not (wal == "kafka" and config.storage.trace.wal.kafka.brokers):
        raise ConfigError(
            f"-target {plan.name}: the backend-scheduler elects its leader through a Kafka consumer group, but "
            "storage.trace.wal.backend is not kafka with storage.trace.wal.kafka.brokers set (docs/scaling.md)"
        )
    if plan.backend_worker and not config.backend_worker.schedulers:
        raise ConfigError(
            f"-target {plan.name}: a backend-worker asks backend-schedulers for jobs: list their URLs under "
            "backend_worker.schedulers (docs/scaling.md)"
        )
    if plan.query and not plan.live_store and not config.querier.live_stores:
        raise ConfigError(
            f"-target {plan.name} answers queries but finds no live-store: list them under "
            "querier.live_stores (url and partitions of each; docs/scaling.md)"
        )


def check_live_store_partitions(config: Config, partitions: int) -> tuple[int, ...]:
    """The partitions this process's live-store consumes (`live_store.partitions`, else all), checked
    against the WAL's partition count."""
    wanted = config.live_store.partitions or tuple(range(partitions))
    bad = [p for p in wanted if not 0 <= p < partitions]
    if bad:
        raise ConfigError(
            f"live_store.partitions names partition {bad[0]}, but the WAL has {partitions} partitions "
            f"(0-{partitions - 1})"
        )
    return tuple(sorted(set(wanted)))


def check_querier_coverage(config: Config, partitions: int) -> None:
    """Every WAL partition must be served by a configured live-store, or recent data is missed; by at most
    one per zone (two live-stores of a partition in different zones are twins: either answers for it)."""
    owners: dict[int, list[str]] = {}
    zones: dict[tuple[int, str], str] = {}
    for instance in config.querier.live_stores:
        if not instance.url:
            raise ConfigError("querier.live_stores: an instance has no url")
        for p in instance.partitions or range(partitions):
            owners.setdefault(p, []).append(instance.url)
            twin = zones.setdefault((p, instance.zone), instance.url)
            if twin != instance.url:
                where = f"zone {instance.zone!r}" if instance.zone else "no zone"
                raise ConfigError(
                    f"querier.live_stores: WAL partition {p} is listed under {twin} and {instance.url}, both in "
                    f"{where}: two live-stores of one partition must be in different zones (set zone on each)"
                )
    missing = [p for p in range(partitions) if p not in owners]
    if missing:
        raise ConfigError(
            f"querier.live_stores: no live-store serves WAL partition {missing[0]} (the WAL has {partitions}); "
            "queries would miss its recent spans"
        )
    extra = sorted(p for p in owners if not 0 <= p < partitions)
    if extra:
        raise ConfigError(f"querier.live_stores names partition {extra[0]}, but the WAL has {partitions} partitions")
