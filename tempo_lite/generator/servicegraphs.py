"""The service-graphs processor: request edges between services, paired from the two halves of a call.

A client (or producer) span is the client half of an edge keyed by (trace ID, its span ID); a server
(or consumer) span is the server half keyed by (trace ID, its parent span ID). Halves wait in two
per-tenant Arrow tables for up to `wait` seconds; every batch is paired against them with one hash
join, so pairing is column-wise even when the halves arrive in different batches.

Edge rules follow Tempo: producer/consumer pairs have `connection_type="messaging_system"`; a client
span with `db.name` is a complete edge to that database at once (`connection_type="database"`); on
expiry, a root server span becomes an edge from `user`, and a client span with a peer attribute
(`peer.service`, `db.name`, ...) an edge to that peer, both `connection_type="virtual_node"`. Other
halves that expire are counted in `traces_service_graph_unpaired_spans_total`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import CollectorRegistry, Counter

from tempo_lite.config.generator import ServiceGraphsConfig, label_name
from tempo_lite.errors import ConfigError
from tempo_lite.generator.columns import (
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_PRODUCER,
    KIND_SERVER,
    STATUS_ERROR,
    attribute_strings,
    label_values,
)
from tempo_lite.generator.series import SeriesRegistry
from tempo_lite.spantable import SpanTable

MESSAGING, DATABASE, VIRTUAL_NODE = "messaging_system", "database", "virtual_node"
EDGE_LABELS = ("client", "server", "connection_type")


def _half_schema(side: str, ndims: int) -> pa.Schema:
    fields = [("key", pa.binary()), (side, pa.string()), ("seconds", pa.float64()), ("failed", pa.bool_()),
              ("conn", pa.string()), ("extra", pa.string()), ("expires", pa.float64())]
    fields += [(f"dim{i}", pa.string()) for i in range(ndims)]
    return pa.schema(fields)


@dataclass
class _Pending:
    """Unpaired halves of one tenant. `extra` is the peer (clients) or "root" marker (servers)."""

    clients: pa.Table
    servers: pa.Table

    @property
    def size(self) -> int:
        return self.clients.num_rows + self.servers.num_rows


@dataclass
class _Edges:
    """Completed edges of one batch, as columns."""

    client: list[pa.Array] = field(default_factory=list)
    server: list[pa.Array] = field(default_factory=list)
    conn: list[pa.Array] = field(default_factory=list)
    failed: list[pa.Array] = field(default_factory=list)
    client_seconds: list[pa.Array] = field(default_factory=list)
    server_seconds: list[pa.Array] = field(default_factory=list)
    dims: list[list[pa.Array]] = field(default_factory=list)


class ServiceGraphs:
    def __init__(self, series: SeriesRegistry, config: ServiceGraphsConfig, registry: CollectorRegistry) -> None:
        self.wait = float(config.wait)
        self.max_items = config.max_items
        self.dimensions = tuple(config.dimensions)
        self.peer_attributes = tuple(config.peer_attributes)
        labels = [*EDGE_LABELS, *(label_name(d) for d in self.dimensions)]
        if len(set(labels)) != len(labels) or series.tenant_label in labels:
            raise ConfigError(f"metrics_generator.processor.service_graphs.dimensions {list(self.dimensions)} "
                              f"collide with each other or with {[*EDGE_LABELS, series.tenant_label]}")
        self.buckets = np.asarray(config.histogram_buckets, dtype=np.float64)
        self.requests = series.counter("traces_service_graph_request", "Requests between two nodes.", labels)
        self.failed = series.counter("traces_service_graph_request_failed", "Failed requests between two nodes.",
                                     labels)
        self.server_seconds = series.histogram(
            "traces_service_graph_request_server_seconds", "Server-side request durations.", labels,
            config.histogram_buckets)
        self.client_seconds = series.histogram(
            "traces_service_graph_request_client_seconds", "Client-side request durations.", labels,
            config.histogram_buckets)
        self.unpaired = series.counter("traces_service_graph_unpaired_spans",
                                       "Client or server spans whose other half never came.", EDGE_LABELS)
        self.dropped = series.counter("traces_service_graph_dropped_spans",
                                      "Spans not paired because max_items halves were already waiting.",
                                      EDGE_LABELS)
        self.expired_total = Counter("tempo_metrics_generator_processor_service_graphs_expired_edges",
                                     "Halves of edges that expired unpaired.", ["tenant"], registry=registry)
        self.edges_total = Counter("tempo_metrics_generator_processor_service_graphs_edges",
                                   "Edges completed.", ["tenant"], registry=registry)
        self.pending: dict[str, _Pending] = {}

    # --- halves ------------------------------------------------------------------------------

    def _halves(self, table: SpanTable, now: float) -> tuple[pa.Table, pa.Table, _Edges]:
        spans = table.spans
        kind = pc.fill_null(spans.column("kind"), 0)
        failed = pc.equal(pc.fill_null(spans.column("status_code"), 0), STATUS_ERROR)
        service = pc.fill_null(spans.column("service_name"), "")
        seconds = pc.divide(pc.cast(pc.fill_null(spans.column("duration_nano"), 0), pa.float64()), 1e9)
        trace = pc.cast(spans.column("trace_id"), pa.binary())
        dims = [label_values(table, d) for d in self.dimensions]
        expires = pa.array(np.full(spans.num_rows, now + self.wait))

        is_client = pc.is_in(kind, pa.array([KIND_CLIENT, KIND_PRODUCER], pa.int8()))
        is_server = pc.is_in(kind, pa.array([KIND_SERVER, KIND_CONSUMER], pa.int8()))
        # The first non-empty peer attribute names the node a lone client span called.
        peer = pa.nulls(spans.num_rows, pa.string())
        for attr in self.peer_attributes:
            value = attribute_strings(table, attr)
            peer = pc.coalesce(peer, pc.if_else(pc.equal(value, ""), pa.scalar(None, pa.string()), value))
        db_name = label_values(table, "db.name")
        parent = pc.fill_null(pc.cast(spans.column("parent_span_id"), pa.binary()), b"")
        is_root = pc.or_(pc.equal(parent, b""), pc.equal(parent, b"\x00" * 8))

        edges = _Edges()
        to_db = pc.and_(is_client, pc.not_equal(db_name, ""))
        if pc.any(to_db).as_py():
            edges.client.append(pc.filter(service, to_db))
            edges.server.append(pc.filter(db_name, to_db))
            edges.conn.append(pa.array([DATABASE] * pc.sum(to_db).as_py(), pa.string()))
            edges.failed.append(pc.filter(failed, to_db))
            edges.client_seconds.append(pc.filter(seconds, to_db))
            edges.server_seconds.append(pc.filter(seconds, to_db))
            edges.dims.append([pc.filter(d, to_db) for d in dims])
        client_mask = pc.and_(is_client, pc.invert(to_db))

        def half(mask: pa.Array, side: str, key: pa.Array, conn_kind: int, extra: pa.Array) -> pa.Table:
            conn = pc.if_else(pc.equal(kind, conn_kind), MESSAGING, "")
            cols = [key, service, seconds, failed, conn, extra, expires, *dims]
            return pa.Table.from_arrays([pc.filter(c, mask) for c in cols],
                                        schema=_half_schema(side, len(dims)))

        span_id = pc.cast(spans.column("span_id"), pa.binary())
        clients = half(client_mask, "client", pc.binary_join_element_wise(trace, span_id, b""), KIND_PRODUCER,
                       pc.fill_null(peer, ""))
        servers = half(is_server, "server", pc.binary_join_element_wise(trace, parent, b""), KIND_CONSUMER,
                       pc.if_else(is_root, "root", ""))
        return clients, servers, edges

    # --- processing --------------------------------------------------------------------------

    def observe(self, tenant: str, table: SpanTable, now: float) -> None:
        if table.num_spans == 0:
            return
        self.expire(tenant, now)
        clients, servers, edges = self._halves(table, now)
        pending = self.pending.get(tenant)
        if pending is not None:
            clients = pa.concat_tables([pending.clients, clients])
            servers = pa.concat_tables([pending.servers, servers])
        clients, servers = _first_per_key(clients), _first_per_key(servers)
        if clients.num_rows and servers.num_rows:
            pairs = clients.join(servers, "key", join_type="inner", left_suffix="_c", right_suffix="_s",
                                 coalesce_keys=True)
            if pairs.num_rows:
                self._add_pairs(edges, pairs)
                matched = pairs.column("key")
                clients = clients.filter(pc.invert(pc.is_in(clients.column("key"), matched)))
                servers = servers.filter(pc.invert(pc.is_in(servers.column("key"), matched)))
        clients, servers = self._bound(tenant, clients, servers, pending)
        self.pending[tenant] = _Pending(clients, servers)
        self._record(tenant, edges)

    def _add_pairs(self, edges: _Edges, pairs: pa.Table) -> None:
        conn_c, conn_s = pairs.column("conn_c"), pairs.column("conn_s")
        edges.client.append(pairs.column("client"))
        edges.server.append(pairs.column("server"))
        edges.conn.append(pc.if_else(pc.equal(conn_s, ""), conn_c, conn_s))
        edges.failed.append(pc.or_(pairs.column("failed_c"), pairs.column("failed_s")))
        edges.client_seconds.append(pairs.column("seconds_c"))
        edges.server_seconds.append(pairs.column("seconds_s"))
        # Tempo writes the client's dimensions first and the server's over them.
        edges.dims.append([
            pc.if_else(pc.equal(pairs.column(f"dim{i}_s"), ""), pairs.column(f"dim{i}_c"), pairs.column(f"dim{i}_s"))
            for i in range(len(self.dimensions))
        ])

    def _bound(self, tenant: str, clients: pa.Table, servers: pa.Table, pending: _Pending | None
               ) -> tuple[pa.Table, pa.Table]:
        """Keep at most `max_items` halves: those already waiting first, then new ones in order."""
        excess = clients.num_rows + servers.num_rows - self.max_items
        if excess <= 0:
            return clients, servers
        expires = np.concatenate([clients.column("expires").to_numpy(), servers.column("expires").to_numpy()])
        keep = np.zeros(len(expires), dtype=bool)
        keep[np.argsort(expires, kind="stable")[: self.max_items]] = True
        keep_c, keep_s = keep[: clients.num_rows], keep[clients.num_rows:]
        self._count(self.dropped, tenant, clients.filter(pa.array(~keep_c)), "client")
        self._count(self.dropped, tenant, servers.filter(pa.array(~keep_s)), "server")
        return clients.filter(pa.array(keep_c)), servers.filter(pa.array(keep_s))

    def _count(self, family: object, tenant: str, halves: pa.Table, side: str) -> None:
        if not halves.num_rows:
            return
        groups = halves.group_by([side, "conn"]).aggregate([("key", "count")])
        for name, conn, n in zip(groups.column(side).to_pylist(), groups.column("conn").to_pylist(),
                                 groups.column("key_count").to_pylist(), strict=True):
            labels = (name, "", conn) if side == "client" else ("", name, conn)
            family.inc(tenant, labels, n)  # type: ignore[attr-defined]

    def expire(self, tenant: str, now: float) -> None:
        pending = self.pending.get(tenant)
        if pending is None or pending.size == 0:
            return
        edges = _Edges()
        gone_c = pc.less_equal(pending.clients.column("expires"), now)
        gone_s = pc.less_equal(pending.servers.column("expires"), now)
        old_c, old_s = pending.clients.filter(gone_c), pending.servers.filter(gone_s)
        if old_c.num_rows == 0 and old_s.num_rows == 0:
            return
        pending.clients, pending.servers = pending.clients.filter(pc.invert(gone_c)), \
            pending.servers.filter(pc.invert(gone_s))
        self.expired_total.labels(tenant).inc(old_c.num_rows + old_s.num_rows)
        to_peer = pc.not_equal(old_c.column("extra"), "")
        from_user = pc.equal(old_s.column("extra"), "root")
        peers, roots = old_c.filter(to_peer), old_s.filter(from_user)
        ndims = len(self.dimensions)
        if peers.num_rows:
            edges.client.append(peers.column("client"))
            edges.server.append(peers.column("extra"))
            edges.client_seconds.append(peers.column("seconds"))
            edges.server_seconds.append(pa.array(np.zeros(peers.num_rows)))
            edges.failed.append(peers.column("failed"))
            edges.dims.append([peers.column(f"dim{i}") for i in range(ndims)])
        if roots.num_rows:
            edges.client.append(pa.array(["user"] * roots.num_rows, pa.string()))
            edges.server.append(roots.column("server"))
            edges.client_seconds.append(pa.array(np.zeros(roots.num_rows)))
            edges.server_seconds.append(roots.column("seconds"))
            edges.failed.append(roots.column("failed"))
            edges.dims.append([roots.column(f"dim{i}") for i in range(ndims)])
        for part in (peers, roots):
            if part.num_rows:
                edges.conn.append(pa.array([VIRTUAL_NODE] * part.num_rows, pa.string()))
        self._count(self.unpaired, tenant, old_c.filter(pc.invert(to_peer)), "client")
        self._count(self.unpaired, tenant, old_s.filter(pc.invert(from_user)), "server")
        self._record(tenant, edges)

    def expire_all(self, now: float) -> None:
        for tenant in list(self.pending):
            self.expire(tenant, now)

    def _record(self, tenant: str, edges: _Edges) -> None:
        if not edges.client:
            return

        def cat(parts: list[pa.Array]) -> pa.Array:
            return pa.concat_arrays([p.combine_chunks() if isinstance(p, pa.ChunkedArray) else p for p in parts])

        client_s, server_s = cat(edges.client_seconds), cat(edges.server_seconds)
        columns = {"client": cat(edges.client), "server": cat(edges.server), "conn": cat(edges.conn)}
        for i in range(len(self.dimensions)):
            columns[f"dim{i}"] = cat([d[i] for d in edges.dims])
        keys = list(columns)
        columns["cb"] = pa.array(np.searchsorted(self.buckets, client_s.to_numpy(zero_copy_only=False)), pa.int32())
        columns["sb"] = pa.array(np.searchsorted(self.buckets, server_s.to_numpy(zero_copy_only=False)), pa.int32())
        columns["failed"] = pc.cast(cat(edges.failed), pa.int64())
        columns["cs"], columns["ss"] = client_s, server_s
        groups = pa.table(columns).group_by([*keys, "cb", "sb"]).aggregate(
            [("failed", "count"), ("failed", "sum"), ("cs", "sum"), ("ss", "sum")])
        nb = len(self.buckets) + 1
        acc: dict[tuple[str, ...], list] = {}
        rows = zip(*(groups.column(k).to_pylist() for k in keys), groups.column("cb").to_pylist(),
                   groups.column("sb").to_pylist(), groups.column("failed_count").to_pylist(),
                   groups.column("failed_sum").to_pylist(), groups.column("cs_sum").to_pylist(),
                   groups.column("ss_sum").to_pylist(), strict=True)
        n_keys = len(keys)
        for row in rows:
            labels = tuple(row[:n_keys])
            cb, sb, count, failed, cs, ss = row[n_keys:]
            entry = acc.get(labels)
            if entry is None:
                entry = acc[labels] = [0, 0, np.zeros(nb), 0.0, np.zeros(nb), 0.0]
            entry[0] += count
            entry[1] += failed
            entry[2][cb] += count
            entry[3] += cs
            entry[4][sb] += count
            entry[5] += ss
        total = 0
        for labels, (count, failed, cbuckets, cs, sbuckets, ss) in acc.items():
            total += count
            self.requests.inc(tenant, labels, count)
            if failed:
                self.failed.inc(tenant, labels, failed)
            self.client_seconds.observe_counts(tenant, labels, cbuckets, cs)
            self.server_seconds.observe_counts(tenant, labels, sbuckets, ss)
        self.edges_total.labels(tenant).inc(total)


def _first_per_key(halves: pa.Table) -> pa.Table:
    """One half per key (a span delivered twice must not make two edges); the oldest wins."""
    if halves.num_rows < 2:
        return halves
    keys = halves.column("key").combine_chunks()
    first = _first_indices(keys)
    if len(first) == halves.num_rows:
        return halves
    return halves.take(pa.array(np.sort(first)))


def _first_indices(keys: pa.Array) -> np.ndarray:
    idx = pa.table({"key": keys, "i": pa.array(np.arange(len(keys)))}).group_by("key", use_threads=False)
    return idx.aggregate([("i", "min")]).column("i_min").to_numpy()
