"""Real OpenTelemetry SDK traces for the UI and CLI tests: several services, errors, events, links and an
attribute value that is markup (it must show as text).

`send_shop_traces(endpoint)` exports, through the SDK's OTLP/HTTP exporter, `checkouts` traces of
frontend -> checkout -> (inventory, payment) plus one `batch-job` trace linking to the first checkout, and
returns what was sent so tests can check what they see.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

XSS = "<img src=x onerror=alert(1)>"
SERVICES = ("frontend", "checkout", "inventory", "payment", "batch-job")


@dataclass
class SentTraces:
    checkout_ids: list[str] = field(default_factory=list)  # 32 hex digits each
    error_ids: list[str] = field(default_factory=list)  # the checkouts whose payment failed
    root_span_ids: list[str] = field(default_factory=list)  # 16 hex digits, one per checkout
    batch_id: str = ""  # the trace whose span links to checkout_ids[0]'s root span
    spans_per_checkout: int = 7


def _hex(trace_id: int) -> str:
    return f"{trace_id:032x}"


@contextmanager
def _span(tracer: trace.Tracer, name: str, shift_ns: int, **kwargs) -> Iterator[trace.Span]:  # noqa: ANN003
    """A current span whose start and end are `shift_ns` in the past (its real duration is kept)."""
    with tracer.start_as_current_span(name, start_time=time.time_ns() - shift_ns, end_on_exit=False,
                                      **kwargs) as span:
        try:
            yield span
        finally:
            span.end(end_time=time.time_ns() - shift_ns)


def send_shop_traces(endpoint: str, *, checkouts: int = 4, fail_every: int = 2,
                     headers: dict[str, str] | None = None, spread_s: float = 0) -> SentTraces:
    """`spread_s` > 0 backdates the checkouts evenly over that many seconds (the last one is now), so
    time series have a shape; the metrics-generator only counts spans within its 30 s ingestion slack."""
    providers = {}
    for name in SERVICES:
        provider = TracerProvider(resource=Resource.create({"service.name": name, "deployment.environment": "test"}))
        exporter = OTLPSpanExporter(endpoint=endpoint, timeout=10, headers=headers)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers[name] = provider
    tracer = {name: p.get_tracer("shop.instrumentation", "1.2.3") for name, p in providers.items()}
    sent = SentTraces()
    try:
        for i in range(checkouts):
            failed = fail_every > 0 and i % fail_every == 1
            shift = int(spread_s * 1e9 * (checkouts - 1 - i) / max(1, checkouts - 1))
            with _span(tracer["frontend"], "GET /checkout", shift, kind=SpanKind.SERVER,
                       attributes={"http.method": "GET", "http.route": "/checkout", "user.comment": XSS}) as root:
                with _span(tracer["frontend"], "call checkout", shift, kind=SpanKind.CLIENT):
                    with _span(tracer["checkout"], "PlaceOrder", shift, kind=SpanKind.SERVER,
                               attributes={"order.items": i + 1}) as place:
                        place.add_event("order validated", {"order.id": f"o-{i}", "note": XSS},
                                        timestamp=time.time_ns() - shift)
                        with _span(tracer["checkout"], "call inventory", shift, kind=SpanKind.CLIENT):
                            with _span(tracer["inventory"], "Reserve", shift, kind=SpanKind.SERVER):
                                time.sleep(0.002)
                        with _span(tracer["checkout"], "call payment", shift, kind=SpanKind.CLIENT) as call:
                            with _span(tracer["payment"], "Charge", shift, kind=SpanKind.SERVER,
                                       attributes={"payment.amount": 12.5 * (i + 1)}) as charge:
                                time.sleep(0.004 + 0.002 * (i % 5))
                                if failed:
                                    charge.add_event("exception", {"exception.type": "CardDeclined",
                                                                   "exception.message": "card declined"},
                                                     timestamp=time.time_ns() - shift)
                                    charge.set_status(Status(StatusCode.ERROR, "card declined"))
                                    call.set_status(Status(StatusCode.ERROR, "payment failed"))
                sent.checkout_ids.append(_hex(root.get_span_context().trace_id))
                sent.root_span_ids.append(f"{root.get_span_context().span_id:016x}")
                if failed:
                    sent.error_ids.append(sent.checkout_ids[-1])
        first = sent.checkout_ids[0]
        link_ctx = trace.SpanContext(trace_id=int(first, 16), span_id=int(sent.root_span_ids[0], 16), is_remote=True,
                                     trace_flags=trace.TraceFlags(1))
        # Started a minute ago: metrics queries leave out the last query_end_cutoff (30 s) as Tempo does.
        with tracer["batch-job"].start_as_current_span("nightly report", kind=SpanKind.INTERNAL,
                                                       links=[Link(link_ctx, {"link.reason": "reported order"})],
                                                       start_time=time.time_ns() - 60 * 10**9,
                                                       ) as job:
            sent.batch_id = _hex(job.get_span_context().trace_id)
    finally:
        for p in providers.values():
            p.force_flush()
            p.shutdown()
    return sent
