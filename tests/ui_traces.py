"""Real OpenTelemetry SDK traces for the UI and CLI tests: several services, errors, events, links and an
attribute value that is markup (it must show as text).

`send_shop_traces(endpoint)` exports, through the SDK's OTLP/HTTP exporter, `checkouts` traces of
frontend -> checkout -> (inventory, payment) plus one `batch-job` trace linking to the first checkout, and
returns what was sent so tests can check what they see.
"""

from __future__ import annotations

import time
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


def send_shop_traces(endpoint: str, *, checkouts: int = 4, fail_every: int = 2,
                     headers: dict[str, str] | None = None) -> SentTraces:
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
            with tracer["frontend"].start_as_current_span("GET /checkout", kind=SpanKind.SERVER,
                                                          attributes={"http.method": "GET",
                                                                      "http.route": "/checkout",
                                                                      "user.comment": XSS}) as root:
                ctx = trace.set_span_in_context(root)
                with tracer["frontend"].start_as_current_span("call checkout", kind=SpanKind.CLIENT, context=ctx):
                    with tracer["checkout"].start_as_current_span("PlaceOrder", kind=SpanKind.SERVER,
                                                                  attributes={"order.items": i + 1}) as place:
                        place.add_event("order validated", {"order.id": f"o-{i}", "note": XSS})
                        with tracer["checkout"].start_as_current_span("call inventory", kind=SpanKind.CLIENT):
                            with tracer["inventory"].start_as_current_span("Reserve", kind=SpanKind.SERVER):
                                time.sleep(0.002)
                        with tracer["checkout"].start_as_current_span("call payment", kind=SpanKind.CLIENT) as call:
                            with tracer["payment"].start_as_current_span("Charge", kind=SpanKind.SERVER,
                                                                         attributes={"payment.amount": 12.5 * (i + 1)}
                                                                         ) as charge:
                                time.sleep(0.004 + 0.002 * i)
                                if failed:
                                    charge.add_event("exception", {"exception.type": "CardDeclined",
                                                                   "exception.message": "card declined"})
                                    charge.set_status(Status(StatusCode.ERROR, "card declined"))
                                    call.set_status(Status(StatusCode.ERROR, "payment failed"))
                sent.checkout_ids.append(_hex(root.get_span_context().trace_id))
                sent.root_span_ids.append(f"{root.get_span_context().span_id:016x}")
                if failed:
                    sent.error_ids.append(sent.checkout_ids[-1])
        first = sent.checkout_ids[0]
        link_ctx = trace.SpanContext(trace_id=int(first, 16), span_id=int(sent.root_span_ids[0], 16), is_remote=True,
                                     trace_flags=trace.TraceFlags(1))
        with tracer["batch-job"].start_as_current_span("nightly report", kind=SpanKind.INTERNAL,
                                                       links=[Link(link_ctx, {"link.reason": "reported order"})]
                                                       ) as job:
            sent.batch_id = _hex(job.get_span_context().trace_id)
    finally:
        for p in providers.values():
            p.force_flush()
            p.shutdown()
    return sent
