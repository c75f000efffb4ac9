"""`-target` (tempo_lite/roles.py): which components a role set runs, the refusals of a WAL or store other
processes cannot share, partition checks, and the shipped per-role configs (deploy/)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from tempo_lite import spantable
from tempo_lite.config import load_config, load_config_text
from tempo_lite.config.schema import BackendWorkerConfig
from tempo_lite.errors import ConfigError
from tempo_lite.roles import ROLES, check_live_store_partitions, check_querier_coverage, parse_target, plan_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SHARED = ("storage: {trace: {local: {shared: true}, wal: {backend: kafka, partitions: 4, "
          "kafka: {brokers: 'b:9092'}}}}\n")
QUERIER = ("querier: {live_stores: [{url: 'http://a:3200', partitions: [0, 1]}, "
           "{url: 'http://b:3200', partitions: [2, 3]}]}\n")


def test_all_is_the_default_and_runs_everything_on_the_embedded_wal_and_local_store() -> None:
    plan = plan_for(load_config_text(""))
    assert plan.all_in_one and plan.name == "all"
    assert plan.wal and plan.store and plan.distributor and plan.live_store and plan.block_builder
    assert plan.query and plan.compactor and not plan.generator  # the generator stays a config switch
    assert plan_for(load_config_text("metrics_generator: {enabled: true}\n")).generator


def test_each_role_runs_only_its_components() -> None:
    config = load_config_text(SHARED + QUERIER)
    distributor = plan_for(config, "distributor")
    assert distributor.wal and not distributor.store and distributor.distributor
    assert not (distributor.live_store or distributor.block_builder or distributor.query or distributor.compactor)
    querier = plan_for(config, "query-frontend,querier")
    assert querier.query and querier.store and not querier.wal and querier.name == "querier,query-frontend"
    builder = plan_for(config, "block-builder")
    assert builder.block_builder and builder.wal and builder.store and not builder.live_store
    worker_config = dataclasses.replace(config, backend_worker=BackendWorkerConfig(schedulers=("http://s:3200",)))
    worker = plan_for(worker_config, "backend-worker")
    assert worker.backend_worker and worker.uses_compactor and not worker.compactor and not worker.wal
    assert plan_for(config, "metrics-generator").generator


def test_target_names_are_checked() -> None:
    assert parse_target("all") == frozenset(ROLES)
    assert parse_target(" live-store , querier ") == {"live-store", "querier"}
    with pytest.raises(ConfigError, match="unknown role 'ingester'"):
        parse_target("ingester")
    with pytest.raises(ConfigError, match="names no role"):
        parse_target(",")


@pytest.mark.parametrize(("target", "text", "why"), [
    ("distributor", "", "storage.trace.wal.backend is embedded"),
    ("live-store", "", "storage.trace.wal.backend is embedded"),
    ("querier", "storage: {trace: {backend: memory}}\n" + QUERIER, "storage.trace.backend is memory"),
    ("compactor", "", "storage.trace.local.shared: true"),
    ("querier", "storage: {trace: {local: {shared: true}}}\n", "querier.live_stores"),
])
def test_a_role_refuses_a_wal_or_store_it_cannot_share(target: str, text: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_for(load_config_text(text), target)
    assert why in info.value.message and "\n" not in info.value.message


def test_live_store_partitions_default_to_all_and_must_exist() -> None:
    assert check_live_store_partitions(load_config_text(""), 4) == (0, 1, 2, 3)
    assert check_live_store_partitions(load_config_text("live_store: {partitions: [3, 1, 1]}\n"), 4) == (1, 3)
    with pytest.raises(ConfigError, match="partition 4, but the WAL has 4"):
        check_live_store_partitions(load_config_text("live_store: {partitions: [4]}\n"), 4)


def test_queriers_must_find_a_live_store_for_every_partition() -> None:
    check_querier_coverage(load_config_text(QUERIER), 4)
    with pytest.raises(ConfigError, match="no live-store serves WAL partition 2"):
        check_querier_coverage(load_config_text("querier: {live_stores: [{url: 'http://a', partitions: [0, 1]}]}\n"), 3)
    with pytest.raises(ConfigError, match="partition 5"):
        check_querier_coverage(
            load_config_text("querier: {live_stores: [{url: 'http://a', partitions: [0, 1, 2, 3, 5]}]}\n"), 4)


def test_two_live_stores_of_a_partition_must_be_in_different_zones() -> None:
    twins = ("querier: {zone: b, live_stores: [{url: 'http://a', zone: a}, {url: 'http://b', zone: b}]}\n"
             "live_store: {zone: a}\n")
    config = load_config_text(twins)
    check_querier_coverage(config, 4)
    assert config.querier.zone == "b" and config.live_store.zone == "a"
    assert [i.zone for i in config.querier.live_stores] == ["a", "b"]
    with pytest.raises(ConfigError, match="partition 1 is listed under http://a and http://b, both in zone 'a'"):
        check_querier_coverage(load_config_text(
            "querier: {live_stores: [{url: 'http://a', zone: a}, {url: 'http://b', partitions: [1], zone: a}]}\n"), 4)
    with pytest.raises(ConfigError, match="both in no zone"):
        check_querier_coverage(load_config_text(
            "querier: {live_stores: [{url: 'http://a'}, {url: 'http://b', partitions: [1]}]}\n"), 4)


def test_span_tables_cross_processes_unchanged() -> None:
    from otlp_helpers import encoded, sdk_spans

    table = spantable.flatten(list(encoded(sdk_spans("ipc", traces=3)).resource_spans))
    back = spantable.from_ipc(spantable.to_ipc(table))
    assert back.spans.equals(table.spans) and back.resources.equals(table.resources)
    with pytest.raises(ValueError, match="overruns"):
        spantable.from_ipc((1 << 40).to_bytes(8, "big") + b"x")


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())


ROLE_SERVICES = [s for s, d in _compose()["services"].items() if "-target" in str(d.get("command"))]


@pytest.mark.parametrize("service", ROLE_SERVICES)
def test_compose_services_run_shipped_configs_that_load_for_their_roles(service: str) -> None:
    command = _compose()["services"][service]["command"]
    config_path = DEPLOY / Path(command[command.index("--config") + 1]).name
    target = next(arg.split("=", 1)[1] for arg in command if arg.startswith("-target="))
    config = load_config(config_path)
    plan = plan_for(config, target)
    assert not plan.all_in_one
    assert config.storage.trace.wal.partitions == 4 and config.server.http_listen_port == 3200
    if plan.query:
        check_querier_coverage(config, config.storage.trace.wal.partitions)
    # The compose query-frontend shards over the compose queriers.
    assert plan.sharding == (service == "query-frontend")
    if plan.sharding:
        queriers = {s for s, d in _compose()["services"].items() if d.get("command", [])[-1:] == ["-target=querier"]}
        assert config.query_frontend.queriers == tuple(f"http://{q}:3200" for q in sorted(queriers))


def test_every_deploy_config_loads() -> None:
    names = sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "docker-compose.yaml")
    assert names == ["backend-scheduler.yaml", "backend-worker.yaml", "block-builder.yaml", "compactor.yaml",
                     "distributor.yaml", "live-store.yaml",
                     "metrics-generator.yaml", "querier.yaml", "query-frontend.yaml"]
    for name in names:
        load_config(DEPLOY / name)


def test_a_query_frontend_alone_with_queriers_shards_and_otherwise_runs_the_querier_itself() -> None:
    queriers = "query_frontend: {queriers: ['http://q1:3200', 'http://q2:3200']}\n"
    config = load_config_text(SHARED + QUERIER + queriers)
    assert plan_for(config, "query-frontend").sharding
    assert not plan_for(config, "query-frontend,querier").sharding  # names the querier: runs it
    assert not plan_for(config, "querier").sharding
    assert not plan_for(config).sharding  # all
    assert not plan_for(load_config_text(SHARED + QUERIER), "query-frontend").sharding
    assert config.query_frontend.queriers == ("http://q1:3200", "http://q2:3200")
