"""Errors that cross component boundaries, each knowing how a protocol reports it.

Receivers translate these into HTTP status codes or gRPC status codes; nothing else needs to know
which protocol a request came from.
"""

from __future__ import annotations


class TempoLiteError(Exception):
    """Base class: `message` is what the client or operator is shown."""

    http_status = 500
    grpc_code = 13  # INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(TempoLiteError):
    """Malformed payload or invalid IDs: the whole request is refused (HTTP 400, INVALID_ARGUMENT)."""

    http_status = 400
    grpc_code = 3


class Unauthenticated(TempoLiteError):
    """Multitenancy is on and no tenant was given (HTTP 401, UNAUTHENTICATED)."""

    http_status = 401
    grpc_code = 16


class PayloadTooLarge(TempoLiteError):
    """Request body (compressed or decompressed) over the configured bound (HTTP 413)."""

    http_status = 413
    grpc_code = 8  # RESOURCE_EXHAUSTED


class UnsupportedMediaType(TempoLiteError):
    http_status = 415
    grpc_code = 3


class RateLimited(TempoLiteError):
    """A per-tenant limit was hit; the client should retry after `retry_after` seconds."""

    http_status = 429
    grpc_code = 8  # RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(TempoLiteError):
    """The WAL or live-store is saturated or shutting down (HTTP 503, UNAVAILABLE)."""

    http_status = 503
    grpc_code = 14

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(TempoLiteError):
    """Invalid configuration: names the file and the key."""


class StorageError(TempoLiteError):
    """Object storage failed; the message names the backend and the object."""

    http_status = 503
    grpc_code = 14
