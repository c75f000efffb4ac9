"""tempo-lite over HTTP against DuckDB on one wide Parquet file of the same spans, side by side.

    .venv/bin/python bench/query_vs_duckdb.py [--spans 1000000] [--dir DIR] [--runs 3] [--all-runs 1] [--reuse]
        [--only limit,all,tbi,metrics,tags]

1. Generates `--spans` spans (deterministic for `--seed`): traces of 1-12 spans over 8 services (two
   hosts each), span attributes `http.method`, `http.route`, `user.id` (strings), `http.status_code`
   (int), `cpu.load` (float), `cache.hit` (bool) and, on ~10 % of spans, `error.kind` (string), so
   6-7 attributes a span; start times over the 40 minutes before now.
2. Starts `tempo-lite serve` (ingestion rate limit raised, everything else the shipped defaults) and
   sends the spans as OTLP/HTTP protobuf requests of ~1000 spans, then stops it (a graceful stop
   flushes every pending span into blocks), starts it again and waits until the compactor has settled
   (the set of blocks unchanged for `--settle` seconds), so every span sits in blocks.
3. Writes the same spans to DIR/wide.parquet: one row per span, one column per attribute (the "wide
   table" a DuckDB user would write), zstd, 100k-row row groups.
4. Asks both the same questions and prints the side-by-side table (median of `--runs` runs, ms; the
   all-matches queries `--all-runs`):
   search with limit 20 (25 queries: every kind), all matches (limit above the match count, spss 1),
   a key no span has, trace by ID p50/p99 (`/api/v2/traces/<id>`, protobuf), TraceQL metrics against
   `group by`, tag values, bytes per span, and the server's peak RSS.

The DuckDB side returns what a search answer holds: the matching trace IDs (first 20 for the limit
runs) with each trace's start, duration, root service and root span name. Match counts of the
all-matches runs are compared (a mismatch is printed). `--reuse` skips steps 1-3 when DIR holds a
previous run of the same size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from tempo_lite.block.meta import BlockMeta  # noqa: E402
from tempo_lite.compactor import plan_compactions  # noqa: E402
from tempo_lite.config import CompactionConfig  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

EXTRA = """
overrides:
  defaults:
    ingestion: {rate_limit_bytes: 10000000000, burst_size_bytes: 10000000000}
"""
SERVICES = ["frontend", "cart", "checkout", "payment", "shipping", "email", "currency", "ads"]
NAMES_PER_SERVICE = 5
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH"]
ROUTES = [f"/api/{r}" for r in ("cart", "cart/{id}", "checkout", "products", "products/{id}", "users/{id}",
                                 "orders", "orders/{id}", "ads", "recommendations", "currency", "shipping/quote",
                                 "payment/charge", "email/send", "health", "login", "logout", "search",
                                 "reviews/{id}", "wishlist")]
STATUS_CODES = [200, 200, 200, 200, 201, 204, 301, 400, 404, 500, 503]
ERROR_KINDS = ["timeout", "refused", "reset", "dns", "tls"]
USERS = 50_000


@dataclass
class Spans:
    """Column arrays of the generated spans (one entry per span)."""

    trace_id: np.ndarray  # (n, 16) uint8
    span_id: np.ndarray  # (n, 8) uint8
    parent: np.ndarray  # int64 row of the parent span, -1 for roots
    service: np.ndarray  # index into SERVICES
    host: np.ndarray  # 0/1
    name: np.ndarray  # index into the service's span names
    kind: np.ndarray  # OTLP kind
    status: np.ndarray  # OTLP status code
    start: np.ndarray  # int64 ns
    duration: np.ndarray  # int64 ns
    method: np.ndarray
    route: np.ndarray
    user: np.ndarray
    http_status: np.ndarray
    load: np.ndarray  # float, 2 decimals
    cache_hit: np.ndarray  # bool
    error_kind: np.ndarray  # -1 = absent
    trace_first: np.ndarray  # first row of each trace (n_traces + 1)

    @property
    def n(self) -> int:
        return len(self.start)


def span_name(service: int, name: int) -> str:
    verbs = ["GET", "POST", "process", "query", "publish"]
    return f"{SERVICES[service]} {verbs[name]}"


def generate(n: int, seed: int, now: int) -> Spans:
    """`n` spans starting in the 40 minutes before `now` (ns), the same for the same arguments."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 13, size=n // 6 + 16)
    cum = np.cumsum(sizes)
    k = int(np.searchsorted(cum, n)) + 1
    sizes = sizes[:k]
    sizes[-1] -= int(cum[k - 1] - n)
    if sizes[-1] <= 0:
        sizes = sizes[:-1]
    n_traces = len(sizes)
    first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    trace_of = np.repeat(np.arange(n_traces), sizes)
    within = np.arange(n) - first[trace_of]
    trace_ids = rng.integers(0, 256, size=(n_traces, 16), dtype=np.uint8)
    span_id = rng.integers(0, 256, size=(n, 8), dtype=np.uint8)
    span_id[:, 0] |= 1  # never all zero
    # Parent: a random earlier span of the same trace (the root has none).
    parent_within = np.floor(rng.random(n) * np.maximum(within, 1)).astype(np.int64)
    parent = np.where(within == 0, -1, first[trace_of] + parent_within)
    trace_start = now - 40 * 60 * 10**9 + rng.integers(0, 38 * 60 * 10**9, size=n_traces)
    duration = np.exp(rng.normal(np.log(2e6), 1.6, size=n)).astype(np.int64) + 1000
    offset = (rng.random(n) * 5e7).astype(np.int64)
    start = trace_start[trace_of] + np.where(within == 0, 0, offset)
    # Roots last longest: their duration covers every child.
    ends = start + duration
    trace_end = np.maximum.reduceat(ends, first[:-1])
    root_rows = first[:-1]
    duration[root_rows] = trace_end - start[root_rows]
    service = rng.integers(0, len(SERVICES), size=n)
    status = np.where(rng.random(n) < 0.05, 2, np.where(rng.random(n) < 0.2, 1, 0)).astype(np.int8)
    kind = rng.choice(np.array([1, 2, 3, 4, 5], dtype=np.int8), size=n, p=[0.3, 0.35, 0.25, 0.05, 0.05])
    kind[root_rows] = 2
    error_kind = np.where(rng.random(n) < 0.1, rng.integers(0, len(ERROR_KINDS), size=n), -1)
    return Spans(
        trace_id=trace_ids[trace_of], span_id=span_id, parent=parent, service=service,
        host=rng.integers(0, 2, size=n), name=rng.integers(0, NAMES_PER_SERVICE, size=n), kind=kind,
        status=status, start=start, duration=duration,
        method=rng.integers(0, len(METHODS), size=n), route=rng.integers(0, len(ROUTES), size=n),
        user=rng.integers(0, USERS, size=n), http_status=rng.integers(0, len(STATUS_CODES), size=n),
        load=np.round(rng.random(n), 2), cache_hit=rng.random(n) < 0.7, error_kind=error_kind,
        trace_first=first,
    )


# --------------------------------------------------------------------------------------------------
# OTLP protobuf, encoded by hand (field numbers of opentelemetry/proto/trace/v1/trace.proto)


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _kv(key: str, value: object) -> bytes:
    if isinstance(value, bool):
        any_value = b"\x10" + (b"\x01" if value else b"\x00")
    elif isinstance(value, int):
        any_value = b"\x18" + _varint(value & (2**64 - 1))
    elif isinstance(value, float):
        any_value = b"\x21" + struct.pack("<d", value)
    else:
        any_value = _ld(1, str(value).encode())
    return _ld(9, _ld(1, key.encode()) + _ld(2, any_value))  # Span.attributes = 9


class Encoder:
    """OTLP ExportTraceServiceRequest bytes for a range of traces, with cached attribute encodings."""

    def __init__(self, s: Spans) -> None:
        self.s = s
        self.method = [_kv("http.method", m) for m in METHODS]
        self.route = [_kv("http.route", r) for r in ROUTES]
        self.status = [_kv("http.status_code", c) for c in STATUS_CODES]
        self.load = {i: _kv("cpu.load", i / 100) for i in range(101)}
        self.hit = [_kv("cache.hit", False), _kv("cache.hit", True)]
        self.error = [_kv("error.kind", e) for e in ERROR_KINDS]
        self.users: dict[int, bytes] = {}
        self.names = [[_ld(5, span_name(sv, i).encode()) for i in range(NAMES_PER_SERVICE)]
                      for sv in range(len(SERVICES))]
        self.kinds = [b"" if k == 0 else b"\x30" + _varint(k) for k in range(6)]
        self.statuses = [b"", _ld(15, b"\x18\x01"), _ld(15, b"\x18\x02")]

    def resource(self, service: int, host: int) -> bytes:
        attrs = (_ld(1, _ld(1, b"service.name") + _ld(2, _ld(1, SERVICES[service].encode())))
                 + _ld(1, _ld(1, b"host.name") + _ld(2, _ld(1, f"{SERVICES[service]}-{host}".encode())))
                 + _ld(1, _ld(1, b"deployment.environment") + _ld(2, _ld(1, b"prod"))))
        return attrs

    def request(self, t0: int, t1: int) -> bytes:
        s = self.s
        lo, hi = int(s.trace_first[t0]), int(s.trace_first[t1])
        groups: dict[tuple[int, int], list[bytes]] = {}
        tid = s.trace_id[lo:hi].tobytes()
        sid = s.span_id[lo:hi].tobytes()
        cols = [a[lo:hi].tolist() for a in (s.parent, s.service, s.host, s.name, s.kind, s.status, s.start,
                                             s.duration, s.method, s.route, s.user, s.http_status, s.load,
                                             s.cache_hit, s.error_kind)]
        pack = struct.Struct("<Q").pack
        rows = enumerate(zip(*cols, strict=True))
        for i, (par, sv, host, nm, kd, st, start, dur, me, ro, us, hs, ld, hit, ek) in rows:
            user = self.users.get(us)
            if user is None:
                user = self.users[us] = _kv("user.id", f"user-{us}")
            parts = [b"\x0a\x10", tid[i * 16 : i * 16 + 16], b"\x12\x08", sid[i * 8 : i * 8 + 8]]
            if par >= 0:
                p = par - lo
                parts += [b"\x22\x08", sid[p * 8 : p * 8 + 8]]
            parts += [self.names[sv][nm], self.kinds[kd], b"\x39", pack(start), b"\x41", pack(start + dur),
                      self.method[me], self.route[ro], self.status[hs], user, self.load[round(ld * 100)],
                      self.hit[hit]]
            if ek >= 0:
                parts.append(self.error[ek])
            parts.append(self.statuses[st])
            body = b"".join(parts)
            groups.setdefault((sv, host), []).append(b"\x12" + _varint(len(body)) + body)
        out = []
        scope = _ld(1, _ld(1, b"bench") + _ld(2, b"1.0"))
        for (sv, host), spans in groups.items():
            scope_spans = scope + b"".join(spans)
            out.append(_ld(1, _ld(1, self.resource(sv, host)) + _ld(2, scope_spans)))
        return b"".join(out)


def requests_for(s: Spans, spans_per_request: int = 1000) -> list[tuple[int, int]]:
    """Trace ranges of ~spans_per_request spans."""
    bounds = np.searchsorted(s.trace_first, np.arange(0, s.n, spans_per_request), side="left").tolist()
    bounds = sorted(set(bounds + [len(s.trace_first) - 1]))
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def ingest(server: ServerProcess, s: Spans, threads: int = 3) -> float:
    enc = Encoder(s)
    ranges = requests_for(s)
    next_i = [0]
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        with httpx.Client(timeout=60, headers={"Content-Type": "application/x-protobuf"}) as client:
            while True:
                with lock:
                    if next_i[0] >= len(ranges) or errors:
                        return
                    t0, t1 = ranges[next_i[0]]
                    next_i[0] += 1
                body = enc.request(t0, t1)
                for attempt in range(200):
                    r = client.post(server.otlp, content=body)
                    if r.status_code == 200:
                        break
                    if r.status_code in (429, 503):
                        time.sleep(min(2.0, 0.05 * (attempt + 1)))
                        continue
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                    return

    t = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise SystemExit(f"ingest failed: {errors[0]}")
    return time.perf_counter() - t


def wide_table(s: Spans) -> pa.Table:
    def strings(values: list[str], idx: np.ndarray) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)), pa.array(values)).cast(pa.string())

    names = [span_name(sv, i) for sv in range(len(SERVICES)) for i in range(NAMES_PER_SERVICE)]
    parent_ids = np.zeros((s.n, 8), dtype=np.uint8)
    has_parent = s.parent >= 0
    parent_ids[has_parent] = s.span_id[s.parent[has_parent]]
    error = s.error_kind
    return pa.table({
        "trace_id": pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(16), s.n, [None, pa.py_buffer(s.trace_id.tobytes())]),
        "span_id": pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), s.n, [None, pa.py_buffer(s.span_id.tobytes())]),
        "parent_span_id": pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(8), s.n, [pa.array(has_parent).buffers()[1], pa.py_buffer(parent_ids.tobytes())]),
        "name": strings(names, s.service * NAMES_PER_SERVICE + s.name),
        "kind": pa.array(s.kind, pa.int8()),
        "status_code": pa.array(s.status, pa.int8()),
        "start_unix_nano": pa.array(s.start, pa.int64()),
        "duration_nano": pa.array(s.duration, pa.int64()),
        "service_name": strings(SERVICES, s.service),
        "host_name": pa.array([f"{SERVICES[a]}-{b}" for a, b in zip(s.service.tolist(), s.host.tolist(), strict=True)]),
        "deployment_environment": strings(["prod"], np.zeros(s.n, np.int32)),
        "http_method": strings(METHODS, s.method),
        "http_route": strings(ROUTES, s.route),
        "http_status_code": pa.array(np.array(STATUS_CODES)[s.http_status], pa.int64()),
        "user_id": pa.array([f"user-{u}" for u in s.user.tolist()]),
        "cpu_load": pa.array(s.load, pa.float64()),
        "cache_hit": pa.array(s.cache_hit),
        "error_kind": pa.array([None if e < 0 else ERROR_KINDS[e] for e in error.tolist()], pa.string()),
    })


# --------------------------------------------------------------------------------------------------
# Queries


@dataclass(frozen=True)
class Case:
    kind: str
    traceql: str
    sql: str  # WHERE clause over `spans` (span-level) or a full query producing `m(trace_id)`


def sql_matching(where: str) -> str:
    return f"SELECT DISTINCT trace_id FROM spans WHERE {where}"


TRACES_CTE = ("traces AS (SELECT trace_id, min(start_unix_nano) AS t_start, max(start_unix_nano + duration_nano) "
              "AS t_end, arg_min(service_name, CASE WHEN parent_span_id IS NULL THEN 0 ELSE 1 END) AS root_service, "
              "arg_min(name, CASE WHEN parent_span_id IS NULL THEN 0 ELSE 1 END) AS root_name "
              "FROM spans GROUP BY trace_id)")

CASES = [
    Case("resource string", '{ resource.service.name = "cart" }', sql_matching("service_name = 'cart'")),
    Case("resource string, not copied", '{ resource.host.name = "payment-1" }',
         sql_matching("host_name = 'payment-1'")),
    Case("span string", '{ span.http.method = "POST" }', sql_matching("http_method = 'POST'")),
    Case("span string, rare", '{ span.user.id = "user-4242" }', sql_matching("user_id = 'user-4242'")),
    Case("span int", "{ span.http.status_code = 503 }", sql_matching("http_status_code = 503")),
    Case("span int range", "{ span.http.status_code >= 400 && span.http.status_code < 500 }",
         sql_matching("http_status_code >= 400 AND http_status_code < 500")),
    Case("span float range", "{ span.cpu.load > 0.98 }", sql_matching("cpu_load > 0.98")),
    Case("span bool", "{ span.cache.hit = false && span.http.method = \"PUT\" }",
         sql_matching("cache_hit = false AND http_method = 'PUT'")),
    Case("regex", '{ span.http.route =~ "/api/orders.*" }',
         sql_matching("regexp_full_match(http_route, '/api/orders.*')")),
    Case("negated regex", '{ span.http.route !~ "/api/(c|p|o|u|s|r|a|e|l|h).*" }',
         sql_matching("NOT regexp_full_match(http_route, '/api/(c|p|o|u|s|r|a|e|l|h).*')")),
    Case("!= on optional key", '{ span.error.kind != "timeout" }', sql_matching("error_kind != 'timeout'")),
    Case("name", '{ name = "checkout process" }', sql_matching("name = 'checkout process'")),
    Case("status", "{ status = error }", sql_matching("status_code = 2")),
    Case("kind", "{ kind = consumer }", sql_matching("kind = 5")),
    Case("duration range", "{ duration > 100ms && duration < 110ms }",
         sql_matching("duration_nano > 100000000 AND duration_nano < 110000000")),
    Case("rootServiceName", '{ trace:rootService = "email" }',
         f"WITH {TRACES_CTE} SELECT trace_id FROM traces WHERE root_service = 'email'"),
    Case("traceDuration", "{ traceDuration > 2s }",
         f"WITH {TRACES_CTE} SELECT trace_id FROM traces WHERE t_end - t_start > 2000000000"),
    Case("&& across spansets", '{ resource.service.name = "ads" } && { span.http.status_code = 500 }',
         "SELECT trace_id FROM spans WHERE service_name = 'ads' INTERSECT "
         "SELECT trace_id FROM spans WHERE http_status_code = 500"),
    Case("|| across spansets", '{ span.error.kind = "dns" } || { name = "email publish" }',
         sql_matching("error_kind = 'dns' OR name = 'email publish'")),
    Case("count() filter", '{ span.http.method = "DELETE" } | count() > 2',
         "SELECT trace_id FROM spans WHERE http_method = 'DELETE' GROUP BY trace_id HAVING count(*) > 2"),
    Case("avg() filter", '{ kind = server } | avg(duration) > 200ms',
         "SELECT trace_id FROM spans WHERE kind = 2 GROUP BY trace_id HAVING avg(duration_nano) > 200000000"),
    Case("structural >", '{ resource.service.name = "frontend" } > { status = error }',
         "SELECT DISTINCT c.trace_id FROM spans p JOIN spans c ON c.trace_id = p.trace_id "
         "AND c.parent_span_id = p.span_id WHERE p.service_name = 'frontend' AND c.status_code = 2"),
    Case("structural >>", '{ resource.service.name = "cart" } >> { span.error.kind = "tls" }',
         "WITH RECURSIVE anc(trace_id, span_id, a) AS (SELECT trace_id, span_id, parent_span_id FROM spans "
         "WHERE error_kind = 'tls' AND parent_span_id IS NOT NULL UNION ALL SELECT anc.trace_id, anc.span_id, "
         "p.parent_span_id FROM anc JOIN spans p ON p.trace_id = anc.trace_id AND p.span_id = anc.a "
         "WHERE p.parent_span_id IS NOT NULL) SELECT DISTINCT anc.trace_id FROM anc JOIN spans a "
         "ON a.trace_id = anc.trace_id AND a.span_id = anc.a WHERE a.service_name = 'cart'"),
    Case("structural ~", '{ span.http.route = "/api/login" } ~ { span.http.route = "/api/logout" }',
         "SELECT DISTINCT b.trace_id FROM spans a JOIN spans b ON a.trace_id = b.trace_id AND "
         "a.parent_span_id = b.parent_span_id AND a.span_id != b.span_id "
         "WHERE a.http_route = '/api/login' AND b.http_route = '/api/logout'"),
    Case("key no span has", '{ span.no.such.key = "x" }', "SELECT trace_id FROM spans WHERE false"),
]


def duck_search(con: duckdb.DuckDBPyConnection, case: Case, limit: int | None) -> int:
    """The search answer in DuckDB: matching traces (first `limit`) with start, duration, root fields."""
    lim = f" LIMIT {limit}" if limit else ""
    sql = (f"WITH m AS ({case.sql}{lim}) SELECT s.trace_id, min(start_unix_nano), "
           "max(start_unix_nano + duration_nano) - min(start_unix_nano), "
           "arg_min(service_name, CASE WHEN parent_span_id IS NULL THEN 0 ELSE 1 END), "
           "arg_min(name, CASE WHEN parent_span_id IS NULL THEN 0 ELSE 1 END) "
           "FROM spans s SEMI JOIN m ON s.trace_id = m.trace_id GROUP BY s.trace_id")
    return len(con.sql(sql).to_arrow_table())


def timed(fn, runs: int) -> tuple[float, object]:  # noqa: ANN001
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def timed_cpu(fn, runs: int, cpu) -> tuple[float, float, object]:  # noqa: ANN001
    """Median wall ms, median CPU ms (`cpu()`: seconds of CPU of the process doing the work) and the answer.
    Under load, wall times follow the machine's scheduling; CPU per request does not."""
    walls, cpus, out = [], [], None
    for _ in range(runs):
        c, t = cpu(), time.perf_counter()
        out = fn()
        walls.append((time.perf_counter() - t) * 1000)
        cpus.append((cpu() - c) * 1000)
    return statistics.median(walls), statistics.median(cpus), out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Tempo:
    def __init__(self, server: ServerProcess, start_s: int, end_s: int) -> None:
        self.client = httpx.Client(base_url=server.api, timeout=600)
        self.start_s, self.end_s = start_s, end_s

    def search(self, q: str, limit: int, spss: int = 3) -> httpx.Response:
        """The answer, body read (timed); `traces(...)` counts its traces (the client's parse, not timed)."""
        r = self.client.get("/api/search", params={"q": q, "limit": limit, "spss": spss,
                                                   "start": self.start_s, "end": self.end_s})
        if r.status_code != 200:
            raise SystemExit(f"search {q}: HTTP {r.status_code}: {r.text[:300]}")
        return r

    @staticmethod
    def traces(r: httpx.Response) -> int:
        return len(r.json().get("traces", []))

    def trace(self, trace_id: str) -> int:
        r = self.client.get(f"/api/v2/traces/{trace_id}", headers={"Accept": "application/protobuf"})
        if r.status_code != 200:
            raise SystemExit(f"trace {trace_id}: HTTP {r.status_code}")
        return len(r.content)

    def metrics(self, q: str, step_s: int) -> int:
        r = self.client.get("/api/metrics/query_range", params={"q": q, "start": self.start_s, "end": self.end_s,
                                                                "step": f"{step_s}s"})
        if r.status_code != 200:
            raise SystemExit(f"metrics {q}: HTTP {r.status_code}: {r.text[:300]}")
        return len(r.json().get("series", []))

    def tag_values(self, tag: str) -> int:
        r = self.client.get(f"/api/v2/search/tag/{urllib.parse.quote(tag)}/values",
                            params={"start": self.start_s, "end": self.end_s})
        if r.status_code != 200:
            raise SystemExit(f"tag values {tag}: HTTP {r.status_code}: {r.text[:300]}")
        return len(r.json().get("tagValues", []))


def live_blocks(blocks: Path) -> dict[str, int]:
    out = {}
    for meta in blocks.glob("*/*/meta.json"):
        if (meta.parent / "meta.compacted.json").exists():
            continue
        try:
            out[meta.parent.name] = json.loads(meta.read_text())["total_spans"]
        except (OSError, ValueError, KeyError):
            continue
    return out


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def prepare(args: argparse.Namespace, s: Spans) -> None:
    """Ingest through a real server, stop it (flush), and write the wide Parquet file."""
    work: Path = args.dir
    for sub in ("blocks", "wal"):
        if (work / sub).exists():
            import shutil

            shutil.rmtree(work / sub)
    server = ServerProcess(work, cycle="30s", extra=EXTRA)
    server.start(timeout=120)
    try:
        took = ingest(server, s)
        print(f"ingested {s.n:,} spans in {took:.1f}s ({s.n / took:,.0f} spans/s) over OTLP/HTTP", flush=True)
    finally:
        server.terminate(timeout=600)
    t = time.perf_counter()
    pq.write_table(wide_table(s), work / "wide.parquet", compression="zstd", row_group_size=100_000)
    print(f"wrote wide.parquet in {time.perf_counter() - t:.1f}s", flush=True)
    (work / "generated.json").write_text(json.dumps({"spans": s.n, "seed": args.seed, "now": args.now}))


def compactions_left(blocks: Path) -> int:
    """How many merges the compactor (shipped defaults) would still plan over the live blocks."""
    metas = []
    for meta in blocks.glob("*/*/meta.json"):
        if not (meta.parent / "meta.compacted.json").exists():
            try:
                metas.append(BlockMeta.from_json(meta.read_bytes()))
            except (OSError, ValueError, KeyError):
                continue
    defaults = CompactionConfig()
    return len(plan_compactions(metas, window_ns=int(defaults.compaction_window * 1e9),
                                max_block_bytes=defaults.max_block_bytes))


def settle(server: ServerProcess, blocks: Path, expect: int, quiet_s: float, timeout_s: float = 1800) -> dict[str, int]:
    """Wait until the live blocks hold every span, the compactor has nothing left to merge (its first cycle
    runs 30 s after start and a merge of 1M spans takes tens of seconds) and nothing changed for `quiet_s`."""
    t0 = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        now = live_blocks(blocks)
        if now != last:
            last, since = now, time.monotonic()
        elif (sum(now.values()) >= expect and time.monotonic() - since >= quiet_s
              and not compactions_left(blocks)):
            # Quiet for a while even at one block: the server's block list lags storage by a poll, and a
            # search in the middle of a compaction sees inputs and output at once.
            return now
        time.sleep(1)
    raise SystemExit(f"blocks did not settle: {last}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--all-runs", type=int, default=1, help="runs of each all-matches query")
    parser.add_argument("--trace-ids", type=int, default=200)
    parser.add_argument("--settle", type=float, default=45.0, help="seconds without block changes = compacted")
    parser.add_argument("--reuse", action="store_true", help="reuse DIR's blocks and wide.parquet")
    parser.add_argument("--only", default="", help="comma-separated sections: limit,all,tbi,metrics,tags")
    args = parser.parse_args()
    if args.dir is None:
        args.dir = Path(f"/tmp/tl-qvd-{args.spans}")
    args.dir.mkdir(parents=True, exist_ok=True)
    gen = args.dir / "generated.json"
    previous = json.loads(gen.read_text()) if args.reuse and gen.exists() else {}
    reuse = previous.get("spans") == args.spans and previous.get("seed") == args.seed and "now" in previous
    # The spans' times are relative to the first run: a reused run must regenerate the same ones.
    args.now = previous["now"] if reuse else time.time_ns()
    t = time.perf_counter()
    s = generate(args.spans, args.seed, args.now)
    print(f"generated {s.n:,} spans in {len(s.trace_first) - 1:,} traces ({time.perf_counter() - t:.1f}s)", flush=True)
    if not reuse:
        prepare(args, s)
    sections = set(args.only.split(",")) if args.only else {"limit", "all", "tbi", "metrics", "tags"}

    server = ServerProcess(args.dir, cycle="30s", extra=EXTRA)
    # All-matches answers of the per-trace code took minutes under load: keep the connection open.
    server.config.write_text(server.config.read_text().replace(
        "log_level: info}", "log_level: info, http_server_read_timeout: 900s, http_server_idle_timeout: 900s}"))
    server.start(timeout=600)
    proc = psutil.Process(server.proc.pid)

    def server_cpu() -> float:
        times = proc.cpu_times()
        return times.user + times.system
    peak = [proc.memory_info().rss]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            try:
                peak[0] = max(peak[0], proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    con = duckdb.connect()
    con.execute(f"CREATE VIEW spans AS SELECT * FROM read_parquet('{args.dir / 'wide.parquet'}')")
    rows: list[tuple[str, str, float, float, str]] = []
    try:
        blocks = settle(server, args.dir / "blocks", s.n, args.settle)
        block_bytes = dir_bytes(args.dir / "blocks" / "single-tenant") - sum(
            dir_bytes(p.parent) for p in (args.dir / "blocks").glob("*/*/meta.compacted.json"))
        print(f"{len(blocks)} block(s), {sum(blocks.values()):,} spans; load average {os.getloadavg()}", flush=True)
        lo = int(s.start.min() // 10**9) - 60
        hi = int((s.start + s.duration).max() // 10**9) + 60
        tempo = Tempo(server, lo, hi)
        tempo.client.get("/api/echo")

        if "limit" in sections:
            for case in CASES:
                tl_ms, resp = timed(lambda c=case: tempo.search(c.traceql, 20), args.runs)
                got = tempo.traces(resp)
                dk_ms, want = timed(lambda c=case: duck_search(con, c, 20), args.runs)
                note = "" if got == want else f"count {got} vs {want}"
                rows.append(("limit 20", f"{case.kind}: `{case.traceql}`", tl_ms, dk_ms, note))
                print(f"  limit 20  {case.kind:28s} {tl_ms:9.1f} {dk_ms:9.1f} {tl_ms / max(dk_ms, 1e-3):7.1f}x {note}",
                      flush=True)
        if "all" in sections:
            for case in CASES:
                dk_ms, want = timed(lambda c=case: duck_search(con, c, None), args.all_runs)
                tl_ms, resp = timed(lambda c=case, w=want: tempo.search(c.traceql, max(w, 1) + 1, spss=1),
                                    args.all_runs)
                got = tempo.traces(resp)
                note = "" if got == want else f"MISMATCH {got} vs {want}"
                rows.append(("all matches", f"{case.kind} ({want:,} traces)", tl_ms, dk_ms, note))
                print(f"  all       {case.kind:28s} {tl_ms:9.1f} {dk_ms:9.1f} {tl_ms / max(dk_ms, 1e-3):7.1f}x "
                      f"{want:>8,} {note}", flush=True)
        if "tbi" in sections:
            rng = np.random.default_rng(args.seed + 1)
            picks = rng.choice(len(s.trace_first) - 1, size=min(args.trace_ids, len(s.trace_first) - 1), replace=False)
            ids = [bytes(s.trace_id[s.trace_first[t]]).hex() for t in picks.tolist()]
            for tid in ids[:5]:
                tempo.trace(tid)  # warm once (footers, blooms)
            tl, dk = [], []
            for tid in ids:
                t = time.perf_counter()
                tempo.trace(tid)
                tl.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                con.sql(f"SELECT * FROM spans WHERE trace_id = from_hex('{tid}')").to_arrow_table()
                dk.append((time.perf_counter() - t) * 1000)
            for p in (50, 99):
                rows.append(("trace by ID", f"p{p} over {len(ids)} IDs", percentile(tl, p), percentile(dk, p), ""))
                print(f"  trace by ID p{p}: {percentile(tl, p):.1f} vs {percentile(dk, p):.1f} ms", flush=True)
        if "metrics" in sections:
            step = max(60, (hi - lo) // 40)
            where = f"start_unix_nano >= {lo * 10**9} AND start_unix_nano < {hi * 10**9}"
            bucket = f"(start_unix_nano - {lo * 10**9}) // {step * 10**9}"
            for q, sql in (
                ("{ } | rate() by (resource.service.name)",
                 f"SELECT service_name, {bucket} AS b, count(*) / {step} FROM spans WHERE {where} GROUP BY 1, 2"),
                ("{ } | quantile_over_time(duration, .9)",
                 f"SELECT {bucket} AS b, quantile_cont(duration_nano, 0.9) FROM spans WHERE {where} GROUP BY 1"),
            ):
                tl_ms, tl_cpu, _ = timed_cpu(lambda q=q: tempo.metrics(q, step), args.runs, server_cpu)
                dk_ms, dk_cpu, _ = timed_cpu(lambda sql=sql: con.sql(sql).to_arrow_table(), args.runs,
                                             time.process_time)
                note = f"CPU {tl_cpu:.0f} vs {dk_cpu:.0f} ms ({tl_cpu / max(dk_cpu, 1e-3):.1f}x)"
                rows.append(("metrics", f"`{q}`", tl_ms, dk_ms, note))
                print(f"  metrics {q}: {tl_ms:.1f} vs {dk_ms:.1f} ms; {note}", flush=True)
        if "tags" in sections:
            for tag, col in (("span.http.route", "http_route"), ("resource.service.name", "service_name"),
                             ("span.user.id", "user_id")):
                # The first call for a key is timed on its own: without a value catalogue it reads the blocks.
                first_ms, first_cpu, _ = timed_cpu(lambda tag=tag: tempo.tag_values(tag), 1, server_cpu)
                tl_ms, tl_cpu, n_tl = timed_cpu(lambda tag=tag: tempo.tag_values(tag), args.runs, server_cpu)
                dk_ms, dk_cpu, n_dk = timed_cpu(lambda col=col: len(con.sql(
                    f"SELECT DISTINCT {col} FROM spans WHERE {col} IS NOT NULL").to_arrow_table()), args.runs,
                    time.process_time)
                note = "" if n_tl == n_dk else f"{n_tl} vs {n_dk} values; "
                rows.append(("tag values, 1st call", tag, first_ms, dk_ms, f"{note}server CPU {first_cpu:.0f} ms"))
                rows.append(("tag values", tag, tl_ms, dk_ms, f"{note}CPU {tl_cpu:.0f} vs {dk_cpu:.0f} ms"))
                print(f"  tag values {tag}: 1st {first_ms:.1f}, then {tl_ms:.1f} vs {dk_ms:.1f} ms; "
                      f"CPU {tl_cpu:.0f} vs "
                      f"{dk_cpu:.0f} ms {note}", flush=True)
    finally:
        sampling.set()
        server.terminate(timeout=600)
    wide_bytes = (args.dir / "wide.parquet").stat().st_size
    print()
    print(f"{s.n:,} spans, {len(blocks)} block(s); load average {os.getloadavg()}; server peak RSS "
          f"{peak[0] / 2**20:.0f} MiB")
    print("| what | query | tempo-lite ms | DuckDB ms | ratio | note |")
    print("|---|---|---:|---:|---:|---|")
    for what, q, tl_ms, dk_ms, note in rows:
        ratio = tl_ms / max(dk_ms, 1e-3)
        print(f"| {what} | {q.replace('|', chr(92) + '|')} | {tl_ms:.1f} | {dk_ms:.1f} | {ratio:.1f} | {note} |")
    print(f"| bytes per span | | {block_bytes / s.n:.1f} | {wide_bytes / s.n:.1f} | | |")
    for what in ("limit 20", "all matches"):
        ratios = [tl / max(dk, 1e-3) for w, _, tl, dk, _ in rows if w == what]
        if ratios:
            print(f"{what}: median ratio {statistics.median(ratios):.2f}, worst {max(ratios):.2f}")


if __name__ == "__main__":
    main()
