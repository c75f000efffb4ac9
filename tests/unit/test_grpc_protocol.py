"""The gRPC wire protocol (tempo_lite.grpc_protocol) and the pure parts of the HTTP server: framing, decompression,
`grpc-timeout`, status trailers, exception mapping, metadata, bound addresses, the HTTP/2 stream scheduler.
No sockets."""

from __future__ import annotations

import base64
import gzip
import zlib

import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status

from tempo_lite.errors import (
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    TempoLiteError,
    Unauthenticated,
    Unavailable,
)
from tempo_lite.grpc_protocol import (
    GrpcError,
    GrpcStatus,
    MessageDeframer,
    StatusCode,
    build_trailers,
    decode_grpc_message,
    decompress_message,
    encode_grpc_message,
    frame_message,
    parse_grpc_timeout,
    request_metadata,
    status_for_exception,
)
from tempo_lite.server import parse_bound_address


def test_frame_message_header_is_flag_then_big_endian_length() -> None:
    assert frame_message(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert frame_message(b"", compressed=True) == b"\x01\x00\x00\x00\x00"


def test_deframer_reassembles_messages_split_across_chunks() -> None:
    body = frame_message(b"first") + frame_message(b"z" * 300, compressed=True) + frame_message(b"")
    deframer = MessageDeframer(max_message_bytes=1000)
    messages = []
    for i in range(0, len(body), 7):
        messages += deframer.feed(body[i : i + 7])
    deframer.finish()
    assert messages == [(False, b"first"), (True, b"z" * 300), (False, b"")]


def test_deframer_refuses_an_oversized_message_from_its_header() -> None:
    deframer = MessageDeframer(max_message_bytes=10)
    with pytest.raises(GrpcError) as refused:
        deframer.feed(b"\x00\x00\x00\x00\x0b")  # only the header of an 11-byte message
    assert refused.value.status.code == StatusCode.RESOURCE_EXHAUSTED
    assert "11 vs. 10" in refused.value.status.message


def test_deframer_rejects_bad_flags_and_truncated_bodies() -> None:
    with pytest.raises(GrpcError) as bad_flag:
        MessageDeframer(100).feed(b"\x02\x00\x00\x00\x00")
    assert bad_flag.value.status.code == StatusCode.INTERNAL
    deframer = MessageDeframer(100)
    assert deframer.feed(frame_message(b"abcdef")[:-2]) == []
    with pytest.raises(GrpcError) as truncated:
        deframer.finish()
    assert truncated.value.status.code == StatusCode.INTERNAL


def test_decompress_gzip_and_deflate() -> None:
    payload = b"span data " * 100
    assert decompress_message(gzip.compress(payload), "gzip", 10_000) == payload
    assert decompress_message(zlib.compress(payload), "deflate", 10_000) == payload


def test_decompress_bounds_the_output_size() -> None:
    bomb = gzip.compress(b"\x00" * 1_000_000)
    with pytest.raises(GrpcError) as refused:
        decompress_message(bomb, "gzip", 4096)
    assert refused.value.status.code == StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("payload", "encoding", "code"),
    [
        (b"not gzip at all", "gzip", StatusCode.INTERNAL),
        (gzip.compress(b"abc")[:-6], "gzip", StatusCode.INTERNAL),
        (b"x", "snappy", StatusCode.UNIMPLEMENTED),
        (b"x", "identity", StatusCode.INTERNAL),
    ],
)
def test_decompress_errors_map_to_grpc_codes(payload: bytes, encoding: str, code: StatusCode) -> None:
    with pytest.raises(GrpcError) as failed:
        decompress_message(payload, encoding, 1000)
    assert failed.value.status.code == code


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5S", 5.0), ("100m", 0.1), ("2M", 120.0), ("1H", 3600.0), ("7u", 7e-6), ("9n", 9e-9)],
)
def test_parse_grpc_timeout(value: str, seconds: float) -> None:
    assert parse_grpc_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "S", "5", "123456789S", "5x", "-1S"])
def test_parse_grpc_timeout_rejects_malformed_values(value: str) -> None:
    with pytest.raises(GrpcError):
        parse_grpc_timeout(value)


def test_grpc_message_is_percent_encoded_and_round_trips() -> None:
    message = "trace id 'zz' is not hex: 100% ✗\nline two"
    encoded = encode_grpc_message(message)
    assert encoded == b"trace id 'zz' is not hex: 100%25 %E2%9C%97%0Aline two"
    assert decode_grpc_message(encoded) == message
    assert decode_grpc_message(b"50%") == "50%"  # a stray % is kept


def test_trailers_for_rate_limited_carry_retry_info_twice() -> None:
    status = status_for_exception(RateLimited("slow down", retry_after=1.25))
    trailers = dict(build_trailers(status))
    assert trailers[b"grpc-status"] == b"8"
    assert trailers[b"grpc-message"] == b"slow down"

    def unb64(value: bytes) -> bytes:
        return base64.b64decode(value + b"=" * (-len(value) % 4))

    details = Status.FromString(unb64(trailers[b"grpc-status-details-bin"]))
    assert (details.code, details.message) == (8, "slow down")
    info = RetryInfo()
    assert details.details[0].Unpack(info)
    assert (info.retry_delay.seconds, info.retry_delay.nanos) == (1, 250_000_000)
    bare = RetryInfo.FromString(unb64(trailers[b"google.rpc.retryinfo-bin"]))
    assert bare == info


def test_trailers_for_ok_and_plain_errors_have_no_details() -> None:
    assert build_trailers(GrpcStatus(0)) == [(b"grpc-status", b"0")]
    names = [name for name, _ in build_trailers(status_for_exception(InvalidRequest("bad")))]
    assert names == [b"grpc-status", b"grpc-message"]


@pytest.mark.parametrize(
    ("exc", "code", "retry_after"),
    [
        (InvalidRequest("x"), StatusCode.INVALID_ARGUMENT, None),
        (Unauthenticated("x"), StatusCode.UNAUTHENTICATED, None),
        (PayloadTooLarge("x"), StatusCode.RESOURCE_EXHAUSTED, None),
        (RateLimited("x", retry_after=2.0), StatusCode.RESOURCE_EXHAUSTED, 2.0),
        (Unavailable("x", retry_after=0.5), StatusCode.UNAVAILABLE, 0.5),
        (TempoLiteError("x"), StatusCode.INTERNAL, None),
        (GrpcError(StatusCode.NOT_FOUND, "x"), StatusCode.NOT_FOUND, None),
    ],
)
def test_status_for_exception(exc: Exception, code: StatusCode, retry_after: float | None) -> None:
    assert status_for_exception(exc) == GrpcStatus(code, "x", retry_after)


def test_unexpected_exceptions_become_internal_without_leaking_their_text() -> None:
    status = status_for_exception(KeyError("secret/path"))
    assert status.code == StatusCode.INTERNAL and "secret" not in status.message


def test_request_metadata_drops_pseudo_headers_and_joins_repeats() -> None:
    headers = [(b":path", b"/x"), (b"X-Scope-OrgID", b"acme"), (b"a", b"1"), (b"a", b"2")]
    assert request_metadata(headers) == {"x-scope-orgid": "acme", "a": "1,2"}


@pytest.mark.parametrize(
    ("bind", "address"),
    [("http://127.0.0.1:4317", ("127.0.0.1", 4317)), ("http://[::1]:80", ("::1", 80))],
)
def test_parse_bound_address(bind: str, address: tuple[str, int]) -> None:
    assert parse_bound_address(bind) == address


def test_round_robin_streams_schedules_unblocked_streams_in_turn() -> None:
    import priority

    from tempo_lite.server import RoundRobinStreams

    streams = RoundRobinStreams()
    for stream_id in (1, 3, 5):
        streams.insert_stream(stream_id)
    streams.block(3)
    assert [next(streams) for _ in range(4)] == [1, 5, 1, 5]
    streams.unblock(3)
    streams.remove_stream(1)
    assert [next(streams) for _ in range(3)] == [5, 3, 5]
    streams.block(3)
    streams.block(5)
    with pytest.raises(priority.DeadlockError):
        next(streams)
    with pytest.raises(priority.MissingStreamError):
        streams.unblock(1)
    with pytest.raises(priority.DuplicateStreamError):
        streams.insert_stream(5)
