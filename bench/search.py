"""TraceQL search over >= 5M spans in blocks against DuckDB running equivalent SQL on the same Parquet files.

    .venv/bin/python bench/search.py [--dir DIR] [--blocks 10] [--spans-per-block 500000] [--runs 3]

Blocks are written with `block.writer.encode_block` + `write_block` into DIR/blocks (reused when DIR
already holds them; default: a temporary directory). Every query runs in process through
`Searcher.search` (a `Querier` over a `BlockList` of those blocks and an empty live-store, so the
figures are the search itself, not HTTP) with `most_recent=true` and limit 100 (blocks are searched
newest first and older ones skipped once they cannot reach the answer), and DuckDB answers the same
question: the 100 newest matching traces (joined with
each block's `traces.parquet` for the start time) plus the number of matching traces. The trace IDs of
both answers are compared. A second column shows tempo-lite with the default limit 20 and without
`most_recent`, where the search stops once 20 traces are found.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import duckdb  # noqa: E402
import trio  # noqa: E402
from payloads import BASE_NS, span_table  # noqa: E402

from tempo_lite import spantable  # noqa: E402
from tempo_lite.block.blocklist import BlockList  # noqa: E402
from tempo_lite.block.meta import block_id_for  # noqa: E402
from tempo_lite.block.writer import encode_block, write_block  # noqa: E402
from tempo_lite.metrics import Metrics  # noqa: E402
from tempo_lite.querier.search import Searcher, SearchRequest, parse_search_query  # noqa: E402
from tempo_lite.querier.search_pb import hex_trace_id  # noqa: E402
from tempo_lite.querier.tracebyid import Querier  # noqa: E402
from tempo_lite.storage.cache import ByteCache  # noqa: E402
from tempo_lite.storage.store import local_store  # noqa: E402

TENANT = "single-tenant"
LIMIT = 100


@dataclass(frozen=True)
class Case:
    name: str
    traceql: str
    # SQL producing the matching trace IDs as `m(trace_id)`; `spans` and `res` are defined by the harness.
    matching: str


def attr(key: str, field: str, op: str, value: str) -> str:
    """A generic (list<struct>) attribute condition in DuckDB."""
    return f"len(list_filter(attrs, lambda a: a.key = '{key}' AND a.\"{field}\" {op} {value})) > 0"


CASES = [
    Case("dedicated attr", '{ span.http.method = "POST" }',
         "SELECT DISTINCT trace_id FROM spans WHERE \"span.http.method\" = 'POST'"),
    Case("dedicated attr, rare", '{ span.user.id = "user-4242" }',
         "SELECT DISTINCT trace_id FROM spans WHERE \"span.user.id\" = 'user-4242'"),
    Case("generic int attr", "{ span.http.status_code = 500 }",
         f"SELECT DISTINCT trace_id FROM spans WHERE {attr('http.status_code', 'int', '=', '500')}"),
    Case("resource attr (service)", '{ resource.service.name = "svc-cart" }',
         "SELECT DISTINCT trace_id FROM spans WHERE service_name = 'svc-cart'"),
    Case("resource attr (joined)", '{ resource.host.name = "svc-ads-7d9f-abc" }',
         "SELECT DISTINCT s.trace_id FROM spans s JOIN res r ON s.blk = r.blk AND s.resource_index = r.ri "
         "WHERE len(list_filter(r.attrs, lambda a: a.key = 'host.name' AND a.str = 'svc-ads-7d9f-abc')) > 0"),
    Case("duration range", "{ duration > 100ms && duration < 120ms }",
         "SELECT DISTINCT trace_id FROM spans WHERE duration_nano > 100000000 AND duration_nano < 120000000"),
    Case("regex", '{ span.http.url =~ ".*/api/orders/4242.*" }',
         "SELECT DISTINCT trace_id FROM spans WHERE regexp_full_match(\"span.http.url\", '.*/api/orders/4242.*')"),
    Case("or + status", '{ span.http.status_code = 404 || status = error }',
         f"SELECT DISTINCT trace_id FROM spans WHERE {attr('http.status_code', 'int', '=', '404')} "
         "OR status_code = 2"),
    Case("structural child", '{ resource.service.name = "svc-frontend" } > { status = error && kind = server }',
         "SELECT DISTINCT c.trace_id FROM spans p JOIN spans c ON p.trace_id = c.trace_id "
         "AND c.parent_index = p.nested_set_left WHERE p.service_name = 'svc-frontend' "
         "AND p.nested_set_left > 0 AND c.status_code = 2 AND c.kind = 2"),
    Case("aggregate + scalar filter", '{ span.http.method = "DELETE" } | count() > 3',
         "SELECT trace_id FROM spans WHERE \"span.http.method\" = 'DELETE' GROUP BY trace_id HAVING count(*) > 3"),
    Case("avg aggregate", '{ name = "SELECT orders" } | avg(duration) > 50ms',
         "SELECT trace_id FROM spans WHERE name = 'SELECT orders' GROUP BY trace_id "
         "HAVING avg(duration_nano) > 50000000"),
    Case("by()", '{ status = error } | by(resource.service.name)',
         "SELECT DISTINCT trace_id FROM (SELECT trace_id, service_name, count(*) FROM spans "
         "WHERE status_code = 2 GROUP BY trace_id, service_name)"),
    Case("matches nothing", '{ span.http.method = "PATCH" }',
         "SELECT DISTINCT trace_id FROM spans WHERE \"span.http.method\" = 'PATCH'"),
    Case("matches almost all", "{ duration > 1us }",
         "SELECT DISTINCT trace_id FROM spans WHERE duration_nano > 1000"),
]


class NoLiveSpans:
    """An empty live-store: the benchmark measures block search only."""

    def snapshot(self, tenant: str) -> spantable.SpanTable:
        return spantable.empty_span_table()


async def make_blocks(root: Path, blocks: int, spans_per_block: int) -> None:
    store = local_store(str(root))
    for i in range(blocks):
        bid = block_id_for(TENANT, 0, i)
        if (root / TENANT / bid / "meta.json").exists():
            continue
        t0 = time.perf_counter()
        table = span_table(spans_per_block, seed=1000 + i, start_ns=BASE_NS + i * 3_600_000_000_000)
        # tl1: DuckDB below reads data.parquet directly and needs its trace_id column (tl2 leaves it to
        # traces.parquet).
        block = encode_block(table, block_id=bid, tenant=TENANT, format="tl1")
        await write_block(store, block)
        print(f"block {i}: {block.meta.total_spans} spans, {block.meta.size_bytes / block.meta.total_spans:.1f} "
              f"B/span, {time.perf_counter() - t0:.1f}s", flush=True)


def duck_sql(case: Case, data: list[str], resources: list[str], traces: list[str]) -> str:
    def files(paths: list[str]) -> str:
        return "[" + ", ".join(f"'{p}'" for p in paths) + "]"

    return (
        f"WITH spans AS (SELECT *, parse_dirpath(filename) AS blk FROM read_parquet({files(data)}, filename=true)), "
        f"res AS (SELECT attrs, parse_dirpath(filename) AS blk, file_row_number AS ri "
        f"FROM read_parquet({files(resources)}, filename=true, file_row_number=true)), "
        f"m AS ({case.matching}) "
        f"SELECT t.trace_id, count(*) OVER () AS n FROM m JOIN read_parquet({files(traces)}) t USING (trace_id) "
        f"ORDER BY t.start_unix_nano DESC, t.trace_id LIMIT {LIMIT}"
    )


def timed(fn, runs: int) -> tuple[float, object]:  # noqa: ANN001
    times = []
    out = None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--spans-per-block", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=None, help="run only cases whose name contains this")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="tl-search-bench-"))
    root = base / "blocks"
    await make_blocks(root, args.blocks, args.spans_per_block)

    store = local_store(str(root))
    blocklist = BlockList(store)
    await blocklist.poll()
    metas = blocklist.blocks(TENANT)
    total_spans = sum(m.total_spans for m in metas)
    print(f"{len(metas)} blocks, {total_spans} spans, {sum(m.size_bytes for m in metas) / 1e6:.0f} MB in {root}")
    querier = Querier(NoLiveSpans(), blocklist, store, ByteCache(256 << 20), Metrics())  # type: ignore[arg-type]
    searcher = Searcher(querier)
    blk_dirs = [root / TENANT / m.block_id for m in metas]
    data = [str(d / "data.parquet") for d in blk_dirs]
    resources = [str(d / "resources.parquet") for d in blk_dirs]
    traces = [str(d / "traces.parquet") for d in blk_dirs]
    con = duckdb.connect()

    rows = []
    for case in CASES:
        if args.only and args.only not in case.name:
            continue
        full = parse_search_query(case.traceql + " with (most_recent=true)")
        early = parse_search_query(case.traceql)

        async def run(q, limit: int):  # noqa: ANN001, ANN202
            req = SearchRequest(query=q, legacy=None, start_ns=0, end_ns=0, limit=limit, spss=3, live_only=False)
            return await searcher.search(TENANT, req)

        tl_times, found = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            found, _stats = await run(full, LIMIT)
            tl_times.append((time.perf_counter() - t0) * 1000)
        early_times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            await run(early, 20)
            early_times.append((time.perf_counter() - t0) * 1000)
        sql = duck_sql(case, data, resources, traces)
        duck_ms, duck_rows = timed(lambda sql=sql: con.execute(sql).fetchall(), args.runs)
        matches = duck_rows[0][1] if duck_rows else 0
        duck_ids = [hex_trace_id(bytes(r[0])) for r in duck_rows]
        same = [t.traceID for t in found] == duck_ids
        tl_ms = statistics.median(tl_times)
        rows.append((case, matches, tl_ms, statistics.median(early_times), duck_ms, tl_ms / duck_ms, same))
        print(f"{case.name:28} {matches:>8} {tl_ms:9.0f} {statistics.median(early_times):9.0f} {duck_ms:9.0f} "
              f"{tl_ms / duck_ms:6.2f} {'same' if same else 'DIFFERENT'}", flush=True)

    print()
    print("| query | TraceQL | matching traces | tempo-lite ms (most_recent, limit 100) "
          "| tempo-lite ms (limit 20) | DuckDB ms | ratio | same top 100 |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for case, matches, tl_ms, early_ms, duck_ms, ratio, same in rows:
        q = case.traceql.replace("|", "\\|")
        print(f"| {case.name} | `{q}` | {matches} | {tl_ms:.0f} | {early_ms:.0f} | {duck_ms:.0f} | {ratio:.2f} "
              f"| {'yes' if same else 'NO'} |")
    ratios = [r[5] for r in rows]
    if ratios:
        print(f"\nmedian ratio {statistics.median(ratios):.2f}, max {max(ratios):.2f} "
              f"({total_spans} spans, {len(metas)} blocks)")


if __name__ == "__main__":
    trio.run(main)
