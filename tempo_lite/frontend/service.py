"""What the query API and the CLI ask of a running tempo-lite: `QueryService`, the narrow interface they
depend on (so `api/`, `ui/` and `capture` never import `app/`), and `QueryFrontend`, the frontend's
query object: searches through the querier's `Searcher` and answers trace-by-ID over several tenants.

`TempoLite` (app/) implements `QueryService`; the API handlers take one and nothing wider.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

from tempo_lite import spantable
from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.config import Config
from tempo_lite.errors import InvalidRequest
from tempo_lite.frontend.metrics_params import MetricsParams
from tempo_lite.metrics import Metrics
from tempo_lite.querier.result_columns import ResultColumns
from tempo_lite.querier.search import Searcher, SearchRequest, SearchStats
from tempo_lite.querier.tag_source import TagSource
from tempo_lite.querier.tracebyid import TraceLookup
from tempo_lite.traceql.metrics import MetricsEvaluator
from tempo_lite.traceql.nodes import Attribute, Intrinsic, SpansetFilter

# (the trace's span rows or None, inspected bytes, unreadable blocks); `api/encoding.py` writes the answer
# from the rows (`spantable.encode_traces_data`), no OTLP message objects in between.
TraceAnswer = tuple[spantable.SpanTable | None, int, list[str]]


class TraceSource(Protocol):
    """Trace by ID in one tenant: the querier's `Querier`, or the sharding frontend's `ShardedTraces`."""

    async def find_trace(self, tenant: str, trace_id: bytes, start_ns: int = 0, end_ns: int = 0) -> TraceLookup: ...


class SearchSource(Protocol):
    """Search in one tenant, as messages or column-wise: the querier's `Searcher`, or `ShardedSearcher`."""

    async def search(self, tenant: str, request: SearchRequest) -> tuple[list[pb.TraceSearchMetadata], SearchStats]:
        ...

    async def search_columns(self, tenant: str, request: SearchRequest) -> tuple[ResultColumns, SearchStats]:
        ...


class TagLookup(Protocol):
    """Tag names and values of one tenant: the querier's `TagSource`, or the sharding frontend's `ShardedTags`."""

    async def names(
        self, tenant: str, start_ns: int, end_ns: int, q: SpansetFilter | None, stats: SearchStats
    ) -> dict[str, set[str]]: ...

    async def values_table(
        self, tenant: str, start_ns: int, end_ns: int, ref: Attribute | Intrinsic, q: SpansetFilter | None,
        stats: SearchStats,
    ) -> pa.Table: ...


class MetricsJobs(Protocol):
    """TraceQL metrics evaluated elsewhere: the sharding frontend's `ShardedMetrics` fills the evaluators
    with its queriers' jobs' states."""

    async def accumulate(self, tenants: list[str], p: MetricsParams, evaluators: list[MetricsEvaluator],
                         stats: SearchStats) -> None: ...


class QueryFrontend:
    """Queries over the querier: search (`searcher`) and trace by ID across the request's tenants; tag
    names and values through `tags` and TraceQL metrics through `metrics_jobs` (a sharding frontend's), else
    the querier's own `TagSource` and `MetricsSource` (frontend/metrics.py)."""

    def __init__(self, querier: TraceSource, searcher: SearchSource, tags: TagLookup | None = None,
                 metrics_jobs: MetricsJobs | None = None) -> None:
        self.querier = querier
        self.searcher = searcher
        self.tags = tags
        self.metrics_jobs = metrics_jobs

    def tag_source(self) -> TagLookup:
        return self.tags if self.tags is not None else TagSource(self.local_searcher())

    def local_searcher(self) -> Searcher:
        """The querier's own `Searcher`, for tag and metrics queries, which read blocks in this process.
        A sharding query-frontend splits those into querier jobs over HTTP (frontend/sharding.py) and
        refuses the ones it cannot (gRPC streaming)."""
        if not isinstance(self.searcher, Searcher):
            raise InvalidRequest("this query-frontend shards tag and metrics queries over queriers for HTTP "
                                 "requests only: send gRPC streaming ones to a querier")
        return self.searcher

    async def find_trace(self, tenants: list[str], trace_id: bytes, start_ns: int = 0, end_ns: int = 0) -> TraceAnswer:
        """The trace's spans from every tenant, merged; `None` when no tenant holds any.

        Blocks that could not be read are named in the third item (a partial answer, not an error)."""
        tables = []
        inspected = 0
        failed: list[str] = []
        for tenant in tenants:
            found = await self.querier.find_trace(tenant, trace_id, start_ns, end_ns)
            inspected += found.inspected_bytes
            failed += found.failed_blocks
            if found.table is not None:
                tables.append(found.table)
        if not tables:
            return None, inspected, failed
        table = spantable.concat(tables) if len(tables) > 1 else tables[0]
        return table, inspected, failed


class QueryService(Protocol):
    """The running process as the API sees it: configuration, metrics, readiness and the query frontend."""

    config: Config
    metrics: Metrics
    frontend: QueryFrontend

    def not_ready_reason(self) -> str | None:
        """Why /ready answers 503, or None when ready."""
        ...

    def refresh_gauges(self) -> None:
        """Update the gauges /metrics reports from current component state."""
        ...

    def service_states(self) -> list[tuple[str, str]]:
        """(component, state) for /api/status/services, in start order."""
        ...
