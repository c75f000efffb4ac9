"""The gRPC wire protocol without a grpcio server, as pure functions (no I/O): message framing, request
decompression, `grpc-timeout`, `grpc-message` encoding, status trailers and the `google.rpc.Status` details.

`tempo_lite.grpc_server` is the ASGI adapter built on these; `tempo_lite.server` uses them for the
INTERNAL status it sends when a handler fails.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status

from tempo_lite.errors import RateLimited, TempoLiteError, Unavailable


class StatusCode(IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


SUPPORTED_ENCODINGS = ("gzip", "deflate", "identity")
ACCEPT_ENCODING = ",".join(SUPPORTED_ENCODINGS).encode("ascii")
# The Python OpenTelemetry exporter reads its backoff from this trailer (a bare RetryInfo), not from the
# RetryInfo inside grpc-status-details-bin that Go clients read: send both.
RETRY_INFO_TRAILER = b"google.rpc.retryinfo-bin"
_HEADER = struct.Struct(">BI")
HEADER_SIZE = _HEADER.size


@dataclass(frozen=True)
class GrpcStatus:
    """What ends a call: `retry_after` (seconds) becomes a google.rpc.RetryInfo detail."""

    code: int
    message: str = ""
    retry_after: float | None = None


class GrpcError(Exception):
    """A protocol-level failure of one call, reported to the client as its status."""

    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(message)
        self.status = GrpcStatus(int(code), message)


def frame_message(payload: bytes, *, compressed: bool = False) -> bytes:
    """One length-prefixed message: compressed flag (1 byte), big-endian length (4 bytes), payload."""
    return _HEADER.pack(1 if compressed else 0, len(payload)) + payload


@dataclass
class MessageDeframer:
    """Incremental splitter of a request body into (compressed, payload) messages.

    A length over `max_message_bytes` is refused from the 5-byte header alone, before buffering the payload.
    """

    max_message_bytes: int
    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        self._buffer += data
        messages: list[tuple[bool, bytes]] = []
        while len(self._buffer) >= HEADER_SIZE:
            flag, length = _HEADER.unpack_from(self._buffer)
            if flag not in (0, 1):
                raise GrpcError(StatusCode.INTERNAL, f"invalid compressed flag {flag} in message header")
            if length > self.max_message_bytes:
                raise GrpcError(
                    StatusCode.RESOURCE_EXHAUSTED,
                    f"received message larger than max ({length} vs. {self.max_message_bytes})",
                )
            end = HEADER_SIZE + length
            if len(self._buffer) < end:
                break
            messages.append((flag == 1, bytes(self._buffer[HEADER_SIZE:end])))
            del self._buffer[:end]
        return messages

    def finish(self) -> None:
        """The body ended: anything still buffered is a truncated message."""
        if self._buffer:
            raise GrpcError(
                StatusCode.INTERNAL,
                f"request body ended inside a message ({len(self._buffer)} bytes of an incomplete frame)",
            )


def decompress_message(payload: bytes, encoding: str, max_message_bytes: int) -> bytes:
    """Decompress one message per `grpc-encoding`, refusing output over `max_message_bytes` (zip bombs)."""
    if encoding == "gzip":
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    elif encoding == "deflate":  # gRPC's "deflate" is the zlib format (RFC 1950)
        decompressor = zlib.decompressobj()
    elif encoding == "identity":
        raise GrpcError(StatusCode.INTERNAL, "compressed flag set but grpc-encoding is identity")
    else:
        raise GrpcError(
            StatusCode.UNIMPLEMENTED, f"grpc: Decompressor is not installed for grpc-encoding {encoding!r}"
        )
    try:
        out = decompressor.decompress(payload, max_message_bytes + 1)
    except zlib.error as exc:
        raise GrpcError(
            StatusCode.INTERNAL, f"grpc: failed to decompress the message ({encoding}): {exc}"
        ) from exc
    if len(out) > max_message_bytes:
        raise GrpcError(
            StatusCode.RESOURCE_EXHAUSTED,
            f"received message after decompression larger than max ({max_message_bytes} bytes)",
        )
    if not decompressor.eof:
        raise GrpcError(StatusCode.INTERNAL, f"grpc: truncated {encoding} message")
    return out


_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_grpc_timeout(value: str) -> float:
    """`grpc-timeout` ("100m", "5S", at most 8 digits then a unit) in seconds."""
    digits, unit = value[:-1], value[-1:]
    if not digits.isdigit() or len(digits) > 8 or unit not in _TIMEOUT_UNITS:
        raise GrpcError(StatusCode.INTERNAL, f"malformed grpc-timeout {value!r}")
    return int(digits) * _TIMEOUT_UNITS[unit]


def encode_grpc_message(message: str) -> bytes:
    """Percent-encode `grpc-message`: UTF-8, bytes outside 0x20-0x7E and '%' as %XX."""
    out = bytearray()
    for byte in message.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def decode_grpc_message(value: bytes) -> str:
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == 0x25 and _is_hex(value[i + 1 : i + 3]):
            out.append(int(value[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(value[i])
            i += 1
    return out.decode("utf-8", errors="replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def encode_binary_header(value: bytes) -> bytes:
    """`-bin` metadata values are base64; gRPC implementations emit them unpadded."""
    return base64.b64encode(value).rstrip(b"=")


def _duration(seconds: float) -> Duration:
    nanos_total = max(0, math.ceil(seconds * 1e9))
    return Duration(seconds=nanos_total // 1_000_000_000, nanos=nanos_total % 1_000_000_000)


def retry_info(retry_after: float) -> RetryInfo:
    return RetryInfo(retry_delay=_duration(retry_after))


def status_details(status: GrpcStatus) -> bytes:
    """The serialized google.rpc.Status for `grpc-status-details-bin`, with a RetryInfo when retryable."""
    details = Status(code=status.code, message=status.message)
    if status.retry_after is not None:
        detail = AnyProto()
        detail.Pack(retry_info(status.retry_after))
        details.details.append(detail)
    return details.SerializeToString()


def build_trailers(status: GrpcStatus) -> list[tuple[bytes, bytes]]:
    trailers = [(b"grpc-status", b"%d" % status.code)]
    if status.message:
        trailers.append((b"grpc-message", encode_grpc_message(status.message)))
    if status.code != StatusCode.OK and status.retry_after is not None:
        trailers.append((b"grpc-status-details-bin", encode_binary_header(status_details(status))))
        trailers.append(
            (RETRY_INFO_TRAILER, encode_binary_header(retry_info(status.retry_after).SerializeToString()))
        )
    return trailers


def status_for_exception(exc: BaseException) -> GrpcStatus:
    """How an exception raised by a handler is reported; unexpected ones become INTERNAL."""
    if isinstance(exc, GrpcError):
        return exc.status
    if isinstance(exc, RateLimited | Unavailable):
        return GrpcStatus(exc.grpc_code, exc.message, exc.retry_after)
    if isinstance(exc, TempoLiteError):
        return GrpcStatus(exc.grpc_code, exc.message)
    return GrpcStatus(int(StatusCode.INTERNAL), f"internal error: {type(exc).__name__}")


def request_metadata(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Custom metadata from request headers: names lower-case, pseudo-headers dropped, `-bin` kept base64."""
    metadata: dict[str, str] = {}
    for name, value in headers:
        if name.startswith(b":"):
            continue
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        metadata[key] = f"{metadata[key]},{text}" if key in metadata else text
    return metadata
