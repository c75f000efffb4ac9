"""TraceQL metrics through the querier's sources: every metrics function gives the same answer whether the
spans sit in the live-store, in a block, in both (the minute after a flush), or with traces split across
blocks or between the live-store and a block (before compaction), and however blocks are sliced while
they stream (`querier.metrics_source`: slices of a few row groups, traces carried across slices when the
query needs them whole). Blocks carry dedicated columns, and queries that read no span attribute project
`attrs` away, the case that once failed in `undedicate`."""

from __future__ import annotations

import atexit
import functools
import random
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.block.blocklist import BlockList
from tempo_lite.block.writer import EncodedBlock, encode_block, write_block
from tempo_lite.config import Config
from tempo_lite.frontend.metrics import run_query_instant, run_query_range
from tempo_lite.frontend.service import QueryFrontend
from tempo_lite.metrics import Metrics
from tempo_lite.querier import metrics_source
from tempo_lite.querier.metrics_source import MetricsRead, MetricsSource
from tempo_lite.querier.search import Searcher, SearchStats
from tempo_lite.querier.tracebyid import Querier
from tempo_lite.storage.cache import ByteCache
from tempo_lite.storage.store import local_store
from tempo_lite.traceql import parse
from tempo_lite.traceql.metrics import EXEMPLAR_REF

SEC = 1_000_000_000
T0 = 1_700_000_040  # a multiple of 60 s
TENANT = "t"


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


@functools.cache
def _data(seed: int = 3, traces: int = 40) -> TracesData:
    """Traces of 2-6 spans over four minutes; `http.method` strings become a dedicated column in blocks.
    Built once per arguments and shared by every test (here and in the search and tag tests): read only."""
    rng = random.Random(seed)
    data = TracesData()
    for t in range(traces):
        trace_id = rng.randbytes(16)
        ids = [rng.randbytes(8) for _ in range(rng.randrange(2, 7))]
        base = (T0 + rng.randrange(0, 230)) * SEC
        for i, sid in enumerate(ids):
            rs = data.resource_spans.add()
            rs.resource.attributes.extend([_kv("service.name", f"svc-{(t + i) % 3}")])
            start = base + i * 1_000_000
            span = rs.scope_spans.add().spans.add(
                trace_id=trace_id, span_id=sid, parent_span_id=ids[rng.randrange(i)] if i else b"",
                name=rng.choice(["GET /a", "GET /b", "db"]), kind=rng.choice((1, 2, 3)),
                start_time_unix_nano=start, end_time_unix_nano=start + rng.randrange(1, 10) * 10 ** rng.randrange(4, 9),
                attributes=[_kv("http.method", rng.choice(["GET", "POST"])),
                            _kv("http.status_code", rng.choice((200, 404, 500)))],
            )
            if rng.random() < 0.2:
                span.status.code = 2
            if rng.random() < 0.3:
                span.events.add(time_unix_nano=start + 10, name="ex", attributes=[_kv("level", rng.choice("ab"))])
    return data


class _Live:
    def __init__(self, table: spantable.SpanTable) -> None:
        self.table = table

    async def snapshot(self, tenant: str) -> spantable.SpanTable:
        return self.table


# (table, block ID) -> (table, its block): the same form tables recur in every test of these modules, and
# encoding is most of a test's time. Holding the table keeps its id() from being reused.
_ENCODED: dict[tuple[int, str], tuple[spantable.SpanTable, EncodedBlock]] = {}


def _encoded(table: spantable.SpanTable, block_id: str) -> EncodedBlock:
    key = (id(table), block_id)
    if key not in _ENCODED:
        _ENCODED[key] = (table, encode_block(table, block_id=block_id, tenant=TENANT, row_group_spans=25))
    return _ENCODED[key][1]


# One local store for the blocks of tests that only read them (`_tempo(..., shared=True)`): each table's
# block is written there once per process (block ID `s<n>`), not once per test; removed at exit.
_SHARED_IDS: dict[int, str] = {}  # id(table) -> block ID (the table is held by _ENCODED)
_SHARED_WRITTEN: set[str] = set()


@functools.cache
def _shared_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="tempo-lite-unit-blocks-"))
    atexit.register(shutil.rmtree, root, True)
    return root


async def _tempo(tmp_path: Path, live: spantable.SpanTable, blocks: list[spantable.SpanTable], *,
                 shared: bool = False) -> SimpleNamespace:
    """Just what the metrics API uses of a QueryService: a frontend over a live table and blocks (written to
    tmp_path, encoded once per table), and metrics. With `shared`, the blocks are read from the shared
    store instead (for tests that never change them)."""
    store = local_store(str(_shared_root() if shared else tmp_path / "blocks"))
    blocklist = BlockList(store)
    for i, table in enumerate(blocks):
        block_id = _SHARED_IDS.setdefault(id(table), f"s{len(_SHARED_IDS)}") if shared else f"b{i}"
        block = _encoded(table, block_id)
        assert block.meta.dedicated_columns, "blocks must carry dedicated columns for this test to mean anything"
        if block_id not in _SHARED_WRITTEN:
            await write_block(store, block)
            if shared:
                _SHARED_WRITTEN.add(block_id)
        blocklist.add(block.meta)
    querier = Querier(_Live(live), blocklist, store, ByteCache(1 << 24), Metrics())  # type: ignore[arg-type]
    return SimpleNamespace(frontend=QueryFrontend(querier, Searcher(querier)), metrics=Metrics(), config=Config())


Forms = dict[str, tuple[spantable.SpanTable, list[spantable.SpanTable]]]
_FORMS: dict[int, tuple[TracesData, Forms]] = {}


def _forms(data: TracesData) -> Forms:
    """name -> (live table, block tables). The tables are built once per `data` (as `_data` is shared)."""
    if id(data) not in _FORMS:
        _FORMS[id(data)] = (data, _build_forms(data))
    return dict(_FORMS[id(data)][1])


def _build_forms(data: TracesData) -> Forms:
    rs = list(data.resource_spans)
    whole = spantable.flatten(rs)
    evens, odds = spantable.flatten(rs[0::2]), spantable.flatten(rs[1::2])  # every trace of 2+ spans split
    empty = spantable.empty_span_table()
    return {
        "live": (whole, []),
        "block": (empty, [whole]),
        "live and block": (whole, [whole]),
        "split over blocks": (empty, [evens, odds]),
        "split over live and block": (odds, [evens]),
        "split and duplicated": (odds, [evens, whole]),
    }


QUERIES = [
    "{ } | rate()",
    "{ status = error } | rate() by (resource.service.name)",
    "{ } | histogram_over_time(duration)",
    "{ } | count_over_time() by (name)",
    "{ } | min_over_time(duration) by (kind)",
    "{ } | max_over_time(duration)",
    "{ } | sum_over_time(duration) by (resource.service.name)",
    "{ } | avg_over_time(duration) by (status)",
    "{ } | quantile_over_time(duration, .5, .9, .99)",
    "{ } | quantile_over_time(duration, .5) by (resource.service.name)",
    "{ } | histogram_over_time(duration) by (span.http.method)",
    "{ } | rate() by (span.http.method)",
    '{ span.http.method = "POST" } | count_over_time()',
    "{ } | avg_over_time(span.http.status_code) by (span.http.method)",
    "{ } | max_over_time(span.http.status_code)",
    "{ } | compare({ status = error })",
    "{ } | count_over_time() by (name) | topk(2)",
    "{ } | count_over_time() by (name) | bottomk(1)",
    "{ } | rate() by (resource.service.name) > 0.02",
    "{ kind = server } >> { status = error } | rate()",
    "{ } | count() > 3 | rate()",
    "{ traceDuration > 5ms } | count_over_time() by (rootName)",
    '{ event:name = "ex" } | rate()',
    '{ event.level = "a" } | count_over_time() by (resource.service.name)',
    "{ } | count_over_time() by (event:name)",
]
WINDOW = {"start": str(T0), "end": str(T0 + 240), "step": "60s", "exemplars": "0"}


def _canonical(msg: pb.QueryRangeResponse | pb.QueryInstantResponse) -> pb.Message:
    """The answer without its inspection metrics (bytes and jobs differ between forms, by design), values
    rounded to 12 significant digits (sums in another order differ in the last bits)."""
    out = type(msg)()
    out.CopyFrom(msg)
    out.ClearField("metrics")
    for s in out.series:
        if isinstance(s, pb.InstantSeries):
            s.value = float(f"{s.value:.12g}")
            continue
        for x in s.samples:
            x.value = float(f"{x.value:.12g}")
    return out


@pytest.mark.parametrize("q", QUERIES)
async def test_every_metrics_function_agrees_over_live_block_and_split_forms(
    tmp_path: Path, q: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks stream in slices of two 25-span row groups: traces straddle slices (carried when whole
    # traces are needed), and every block is several slices.
    monkeypatch.setattr(metrics_source, "CHUNK_ROWS", 40)
    monkeypatch.setattr(metrics_source, "CHUNK_BYTES", 1)  # narrow reads too: slices of CHUNK_ROWS
    data = _data()
    forms = _forms(data)
    live, _ = forms["live"]
    reference = await run_query_range(await _tempo(tmp_path, live, [], shared=True), [TENANT], {"q": q, **WINDOW})
    assert reference.series, f"{q}: no series, the comparison would prove nothing"
    instant_ref = await run_query_instant(await _tempo(tmp_path, live, [], shared=True), [TENANT],
                                          {"q": q, "start": WINDOW["start"], "end": WINDOW["end"]})
    for name, (live, blocks) in forms.items():
        tl = await _tempo(tmp_path, live, blocks, shared=True)
        got = await run_query_range(tl, [TENANT], {"q": q, **WINDOW})
        assert got.status != pb.PARTIAL, (name, got.message)
        assert _canonical(got) == _canonical(reference), f"{q}: {name}"
        instant = await run_query_instant(tl, [TENANT], {"q": q, "start": WINDOW["start"], "end": WINDOW["end"]})
        assert _canonical(instant) == _canonical(instant_ref), f"{q} (instant): {name}"


def test_undedicate_without_generic_attrs_drops_the_dedicated_columns() -> None:
    """A projection that left out `attrs` (a metrics query reading no span attribute) keeps no mapping."""
    table = spantable.flatten(_data(traces=3).resource_spans)
    block = spantable.dedicate(table, ["http.method"])
    projected = spantable.SpanTable(block.spans.select(["trace_id", "span_id", "kind", "name"]), block.resources,
                                    dict(block.dedicated))
    folded = spantable.undedicate(projected)
    assert folded.dedicated == {}
    assert folded.spans.column_names == ["trace_id", "span_id", "kind", "name"]
    merged = spantable.concat([projected, table])
    assert merged.num_spans == 2 * table.num_spans
    assert merged.spans.column("name").to_pylist() == table.spans.column("name").to_pylist() * 2


async def _stream(tl: SimpleNamespace, q: str, *, exemplars: bool = False, chunk_rows: int = 60) -> list:
    tables: list[spantable.SpanTable] = []

    async def consume(table: spantable.SpanTable) -> None:
        tables.append(table)

    source = MetricsSource(tl.frontend.searcher, MetricsRead.of([parse(q)], exemplars=exemplars), chunk_rows=chunk_rows)
    await source.stream(TENANT, 0, (T0 + 3600) * SEC, SearchStats(), consume)
    return tables


async def test_blocks_stream_in_bounded_slices_of_only_the_columns_the_query_reads(tmp_path: Path) -> None:
    whole = spantable.flatten(_data(traces=200).resource_spans)
    tl = await _tempo(tmp_path, spantable.empty_span_table(), [whole])
    tables = await _stream(tl, "{ } | rate() by (resource.service.name)")
    assert len(tables) > 5 and sum(t.num_spans for t in tables) == whole.num_spans
    assert max(t.num_spans for t in tables) <= 60 + 25  # a slice ends at the row group reaching 60 rows
    for t in tables:  # read: start time and resource index; the span lists are empty placeholders
        assert set(t.spans.column_names) == {"start_unix_nano", "resource_index", "attrs", "events", "links"}
        assert t.spans.column("attrs").to_pylist() == [[]] * t.num_spans
    (first, *_) = await _stream(tl, '{ span.http.method = "POST" } | quantile_over_time(duration, .9)', exemplars=True)
    # exemplars: a row reference per span, IDs are read afterwards for the exemplars kept (resolve)
    assert set(first.spans.column_names) == {"span.http.method", "duration_nano", "start_unix_nano", EXEMPLAR_REF,
                                             "attrs", "events", "links"}


async def test_whole_trace_queries_get_every_span_of_a_trace_in_one_slice(tmp_path: Path) -> None:
    whole = spantable.flatten(_data(traces=200).resource_spans)
    tl = await _tempo(tmp_path, spantable.empty_span_table(), [whole])
    tables = await _stream(tl, "{ kind = server } >> { status = error } | rate()", chunk_rows=30)
    assert len(tables) > 5 and sum(t.num_spans for t in tables) == whole.num_spans
    seen: set[bytes] = set()
    for t in tables:
        ids = set(t.spans.column("trace_id").to_pylist())
        assert not ids & seen, "a trace was cut between slices"
        seen |= ids


async def test_exemplars_over_split_sources_name_real_spans_and_stay_within_the_limit(tmp_path: Path) -> None:
    data = _data()
    spans = {(bytes(s.trace_id).hex().lstrip("0"), bytes(s.span_id).hex())
             for rs in data.resource_spans for ss in rs.scope_spans for s in ss.spans}
    for name, (live, blocks) in _forms(data).items():
        tl = await _tempo(tmp_path / name.replace(" ", "-"), live, blocks)
        for q in ("{ } | rate() by (resource.service.name)", "{ } | quantile_over_time(duration, .9)"):
            got = await run_query_range(tl, [TENANT], {"q": q, **WINDOW, "exemplars": "7"})
            exemplars = [e for s in got.series for e in s.exemplars]
            assert 0 < len(exemplars) <= 7, (name, q)
            for e in exemplars:
                labels = {lab.key: lab.value.string_value for lab in e.labels}
                assert (labels["trace:id"], labels["span:id"]) in spans, (name, q)
                assert e.value > 0


async def test_an_unreadable_block_gives_a_partial_answer_from_the_others(tmp_path: Path) -> None:
    data = _data()
    rs = list(data.resource_spans)
    evens, odds = spantable.flatten(rs[0::2]), spantable.flatten(rs[1::2])
    tl = await _tempo(tmp_path / "two", spantable.empty_span_table(), [evens, odds])
    (tmp_path / "two" / "blocks" / TENANT / "b1" / "data.parquet").write_bytes(b"not parquet")
    q = {"q": "{ } | count_over_time() by (resource.service.name)", **WINDOW}
    got = await run_query_range(tl, [TENANT], q)
    assert got.status == pb.PARTIAL and "b1" in got.message
    # the readable block's spans, counted as if it were the only source (its split traces included)
    alone = await run_query_range(await _tempo(tmp_path / "one", spantable.empty_span_table(), [evens]), [TENANT], q)
    assert _canonical(got).series == _canonical(alone).series


def test_exemplar_picks_are_the_first_spans_of_each_interval_spread_over_time() -> None:
    """`spread_pick` (prefix search, then the later spans of intervals the prefix lacks) against the rule
    it implements: the first ceil(limit / intervals) spans of each interval, taken rank by rank."""
    import math

    import numpy as np

    from tempo_lite.traceql.metrics_series import spread_pick

    rng = np.random.default_rng(7)
    for trial in range(400):
        n = int(rng.integers(1, 200_000 if trial % 40 == 0 else 5_000))
        k = int(rng.integers(1, 60))
        iv = rng.choice(k, size=n, p=rng.dirichlet(np.ones(k) * rng.choice([0.05, 1.0, 10.0])))
        limit, intervals = int(rng.integers(1, 150)), int(rng.choice([0, k]))
        per = max(1, math.ceil(limit / max(intervals, 1)))
        firsts = [(rank, int(v), int(i)) for v in range(k) for rank, i in enumerate(np.flatnonzero(iv == v)[:per])]
        want = sorted(i for _, _, i in sorted(firsts)[:limit])
        assert spread_pick(iv, limit, intervals).tolist() == want, trial


async def test_query_range_json_is_json_formats_rendering(tmp_path: Path) -> None:
    """The metrics answer's JSON (`frontend.metrics.query_range_json`, written field by field) is byte for
    byte `json.dumps(MessageToDict(...))` for every query, with exemplars, partial answers and odd values."""
    import json

    from google.protobuf.json_format import MessageToDict

    from tempo_lite.frontend.metrics import query_range_json

    data = _data()
    tl = await _tempo(tmp_path, spantable.flatten(data.resource_spans), [])
    for q in QUERIES:
        for exemplars in ("0", "20"):
            msg = await run_query_range(tl, [TENANT], {"q": q, **WINDOW, "exemplars": exemplars})
            assert query_range_json(msg) == json.dumps(MessageToDict(msg), separators=(",", ":")).encode(), q
    odd = pb.QueryRangeResponse(status=pb.PARTIAL, message="cut", metrics=pb.SearchMetrics(inspectedBytes=5))
    series = odd.series.add(labels=[pb.KeyValue(key="a", value=pb.AnyValue(int_value=3)),
                                    pb.KeyValue(key="b", value=pb.AnyValue())])
    for v in (0.0, -0.0, 1.5, float("nan"), float("inf"), -float("inf"), 1e300, 5e-324):
        series.samples.add(value=v, timestamp_ms=7)
        series.exemplars.add(value=v, timestamp_ms=0, labels=[pb.KeyValue(key="c", value=pb.AnyValue(bool_value=True))])
    assert query_range_json(odd) == json.dumps(MessageToDict(odd), separators=(",", ":")).encode()
    assert query_range_json(pb.QueryRangeResponse()) == b"{}"
