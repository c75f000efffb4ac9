"""Search responses as JSON from tempopb messages, without json_format's per-field reflection.

`search_response_json(resp)` is the document `json_format.MessageToDict(resp)` gives (proto3 JSON names,
64-bit integers as strings, default values left out); the attribute encoders are spantable/otlp_json.py's,
shared with querier/trace_json.py.
"""

from __future__ import annotations

import json

from google.protobuf import json_format

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.spantable.otlp_json import key_values_json


def _span_set_json(ss: pb.SpanSet) -> dict:
    out: dict = {}
    spans = []
    for sp in ss.spans:
        s: dict = {}
        if sp.spanID:
            s["spanID"] = sp.spanID
        if sp.name:
            s["name"] = sp.name
        if sp.startTimeUnixNano:
            s["startTimeUnixNano"] = str(sp.startTimeUnixNano)
        if sp.durationNanos:
            s["durationNanos"] = str(sp.durationNanos)
        if sp.attributes:
            s["attributes"] = key_values_json(sp.attributes)
        spans.append(s)
    if spans:
        out["spans"] = spans
    if ss.matched:
        out["matched"] = ss.matched
    if ss.attributes:
        out["attributes"] = key_values_json(ss.attributes)
    return out


def trace_json(md: pb.TraceSearchMetadata) -> dict:
    out: dict = {}
    if md.traceID:
        out["traceID"] = md.traceID
    if md.rootServiceName:
        out["rootServiceName"] = md.rootServiceName
    if md.rootTraceName:
        out["rootTraceName"] = md.rootTraceName
    if md.startTimeUnixNano:
        out["startTimeUnixNano"] = str(md.startTimeUnixNano)
    if md.durationMs:
        out["durationMs"] = md.durationMs
    sets = [_span_set_json(ss) for ss in md.spanSets]
    if md.HasField("spanSet"):
        # Search results repeat the first spanset as `spanSet`: convert it once.
        out["spanSet"] = sets[0] if sets and md.spanSet == md.spanSets[0] else _span_set_json(md.spanSet)
    if sets:
        out["spanSets"] = sets
    if md.serviceStats:
        stats = {}
        for name, st in md.serviceStats.items():
            s: dict = {}
            if st.spanCount:
                s["spanCount"] = st.spanCount
            if st.errorCount:
                s["errorCount"] = st.errorCount
            stats[name] = s
        out["serviceStats"] = stats
    return out


def search_response_json(resp: pb.SearchResponse) -> bytes:
    """`json_format.MessageToDict(resp)` as compact JSON (the same document: proto3 JSON names, 64-bit
    integers as strings, default values left out), built by direct field access: the generic converter
    spent more than the search itself on answers with thousands of traces."""
    doc: dict = {}
    if resp.traces:
        doc["traces"] = [trace_json(md) for md in resp.traces]
    if resp.HasField("metrics"):
        doc["metrics"] = json_format.MessageToDict(resp.metrics)
    return json.dumps(doc, separators=(",", ":")).encode()
