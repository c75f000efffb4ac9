"""A small client of tempo-lite's (and Tempo's) HTTP API for the command line: search, trace by ID,
and OTLP/HTTP push. Standard library only (urllib); errors are `ClientError` with a message for people.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tempo_lite._gen import tempopb_pb2

PROTOBUF = "application/protobuf"


class ClientError(Exception):
    """A failed call. `status` is the HTTP status (0 when the server could not be reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class TempoClient:
    url: str = "http://127.0.0.1:3200"
    tenant: str = ""
    timeout: float = 30.0

    def _request(self, method: str, url: str, *, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> bytes | None:
        hdrs = dict(headers or {})
        if self.tenant:
            hdrs["X-Scope-OrgID"] = self.tenant
        req = urllib.request.Request(url, data=body, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method == "GET" and "/traces/" in url:
                return None
            detail = exc.read().decode("utf-8", "replace").strip() or exc.reason
            where = "" if exc.code == 400 else f"{url.split('?')[0]}: HTTP {exc.code}: "
            raise ClientError(f"{where}{detail}", exc.code) from exc
        except urllib.error.URLError as exc:
            raise ClientError(f"cannot reach {url.split('?')[0]}: {exc.reason}") from exc
        except (TimeoutError, OSError) as exc:
            raise ClientError(f"cannot reach {url.split('?')[0]}: {exc}") from exc

    def _api(self, path: str, params: dict[str, Any] | None = None) -> str:
        qs = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v not in (None, "")})
        return self.url.rstrip("/") + path + (f"?{qs}" if qs else "")

    def search(self, q: str, start: int, end: int, limit: int, spss: int = 3) -> dict[str, Any]:
        """`/api/search` as the JSON document Tempo returns."""
        body = self._request("GET", self._api("/api/search", {"q": q, "start": start, "end": end, "limit": limit,
                                                               "spss": spss}), headers={"Accept": "application/json"})
        assert body is not None
        return json.loads(body)

    def trace(self, trace_id: str, start: int = 0, end: int = 0) -> TracesData | None:
        """`/api/v2/traces/<id>` in protobuf, as TracesData; None when not found."""
        path = "/api/v2/traces/" + urllib.parse.quote(trace_id, safe="")
        body = self._request("GET", self._api(path, {"start": start or None, "end": end or None}),
                             headers={"Accept": PROTOBUF})
        if body is None:
            return None
        msg = tempopb_pb2.TraceByIDResponse.FromString(body)
        if not msg.trace:
            return None
        return TracesData.FromString(msg.trace)

    def push(self, otlp_url: str, request: ExportTraceServiceRequest) -> None:
        """POST one OTLP/HTTP protobuf export request (`otlp_url` ends in /v1/traces)."""
        self._request("POST", otlp_url, body=request.SerializeToString(),
                      headers={"Content-Type": "application/x-protobuf"})
