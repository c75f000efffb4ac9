"""Jaeger agent UDP listeners (compact and binary Thrift) on 127.0.0.1: the real jaeger-client's datagrams
reach push decoded; bad datagrams and push failures are counted and the listener keeps serving."""

from __future__ import annotations

import socket

import trio
from jaeger_client import Config
from test_receiver_jaeger import all_spans, check_workload, emit_batch_message, in_memory_batch, record_workload

from tempo_lite.receivers.jaeger_udp import JaegerUDPStatistics, serve_jaeger_udp


async def test_jaeger_client_udp_compact_spans_reach_push_decoded_field_by_field():
    received: list = []
    got_all = trio.Event()

    async def push(request):
        received.append(request)
        if sum(len(all_spans(r)) for r in received) >= 4:
            got_all.set()

    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(serve_jaeger_udp, "127.0.0.1", 0, True, push)
        config = Config(
            config={
                "sampler": {"type": "const", "param": 1},
                "local_agent": {"reporting_host": host, "reporting_port": port},
                "tags": {"deployment": "ci"},
                "generate_128bit_trace_id": True,
                "reporter_flush_interval": 0.05,
                "logging": False,
            },
            service_name="orders",
            validate=True,
        )
        tracer = config.new_tracer()
        spans = record_workload(tracer)
        closing = tracer.close()  # flushes the reporter's queue on its own IOLoop thread
        with trio.fail_after(10):
            while not closing.done():
                await trio.sleep(0.01)
            await got_all.wait()
        nursery.cancel_scope.cancel()

    merged = received[0]
    for extra in received[1:]:
        merged.resource_spans.extend(extra.resource_spans)
    check_workload(merged, spans, "orders")
    assert spans["root"].trace_id >> 64 != 0  # the 128-bit path was exercised


async def test_binary_agent_listener_skips_bad_datagrams_and_keeps_serving(caplog):
    batch, spans = in_memory_batch("billing")
    received: list = []
    arrived = trio.Event()

    async def push(request):
        received.append(request)
        arrived.set()

    stats = JaegerUDPStatistics()
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(
            lambda task_status: serve_jaeger_udp("127.0.0.1", 0, False, push, statistics=stats, task_status=task_status)
        )
        sender = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sender:
            await sender.sendto(b"\x80\x01\x00garbage", (host, port))
            await sender.sendto(emit_batch_message(batch, compact=False)[:40], (host, port))
            await sender.sendto(emit_batch_message(batch, compact=False), (host, port))
            with trio.fail_after(10):
                await arrived.wait()
        nursery.cancel_scope.cancel()

    assert stats.datagrams_received == 3
    assert stats.datagrams_rejected == 2
    assert stats.spans_received == 4
    assert "dropped" in caplog.text
    check_workload(received[0], spans, "billing")


async def test_push_failure_is_counted_and_listener_continues():
    batch, _ = in_memory_batch()
    datagram = emit_batch_message(batch, compact=True)
    calls = 0
    second = trio.Event()

    async def push(request):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("distributor saturated")
        second.set()

    stats = JaegerUDPStatistics()
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(
            lambda task_status: serve_jaeger_udp("127.0.0.1", 0, True, push, statistics=stats, task_status=task_status)
        )
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            await sender.sendto(datagram, (host, port))
            await sender.sendto(datagram, (host, port))
            with trio.fail_after(10):
                await second.wait()
        nursery.cancel_scope.cancel()
    assert stats.push_failures == 1 and stats.spans_received == 4
